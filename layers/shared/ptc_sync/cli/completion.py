"""Shell completion: a bash function for every command and visible option, generated from the parser."""

from __future__ import annotations

import argparse
import shlex

from ptc_sync.cli.context import (
    PROG,
)

# -- shell completion ---------------------------------------------------------------------------------


def _visible_words(parser: argparse.ArgumentParser) -> tuple[list[str], dict[str, list[str]]]:
    """What help shows (options, and the values of a positional with choices), and the values of
    each option that takes one of a few."""
    words: list[str] = []
    values: dict[str, list[str]] = {}
    for action in parser._actions:  # argparse has no public walk of its actions
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
            continue
        choices = [str(c) for c in action.choices or ()]
        if not action.option_strings:
            words.extend(choices)
            continue
        words.extend(action.option_strings)
        for flag in action.option_strings:
            if choices:
                values[flag] = choices
    return words, values


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def bash_completion(parser: argparse.ArgumentParser) -> str:
    """A bash completion function for every command and visible option (``complete -F``)."""
    commands = _commands(parser)
    top, values = _visible_words(parser)
    cases = []
    for name, sub in commands.items():
        words, sub_values = _visible_words(sub)
        values |= sub_values
        cases.append(f"        {name}) words={shlex.quote(' '.join(words))} ;;")
    value_cases = [
        f'        {flag}) COMPREPLY=($(compgen -W {shlex.quote(" ".join(v))} -- "$cur")); return ;;'
        for flag, v in sorted(values.items())
    ]
    nl = "\n"
    return f"""# bash completion for {PROG}: eval "$({PROG} completion bash)", or save the output as
# ~/.local/share/bash-completion/completions/{PROG}
_ptc_sync() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} prev=${{COMP_WORDS[COMP_CWORD-1]}} command="" words i
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${{COMP_WORDS[i]}} in
            {"|".join(commands)}) command=${{COMP_WORDS[i]}}; break ;;
        esac
    done
    case $prev in
{nl.join(value_cases)}
    esac
    case $command in
{nl.join(cases)}
        *) words={shlex.quote(" ".join([*commands, *top]))} ;;
    esac
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
}}
complete -F _ptc_sync {PROG}
"""
