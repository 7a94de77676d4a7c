"""Chat webhooks for the run report: Slack, Microsoft Teams (Workflows), Discord and Google Chat.

The notifier function is subscribed to the report topic. Each SNS message is the sync's AWS Chatbot
custom notification (``ptc_sync.report``); ``model`` reads it back into a ``ChatReport``, one pure
builder per service renders it within that service's limits (``slack``, ``teams``, ``discord``,
``googlechat``), ``poster`` delivers it with bounded, rate-limit aware retries, and ``service`` ties it
together for the handler: ``deliver_sns_event(event)``.
"""
