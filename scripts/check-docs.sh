#!/usr/bin/env bash
# Checks that the commands the documentation shows exist: every command line of the
# fenced shell blocks (```bash, ```sh, ```shell) of README.md and docs/operations.md
# (or the files given as arguments) is split into its commands (at |, &&, ||, ; and &),
# and the first word of each is checked:
#
#   make T ...                     T is a target of the Makefile
#   messaging-service SUB [SUB2]   SUB (and SUB2 for dlq/keys) is listed by --help of the
#     (also target/*/messaging-service)  binary (target/debug, built if missing)
#   bin/x, scripts/x, ./bin/x      the file exists and is executable
#   python3 FILE, bash FILE        FILE exists
#   cargo ...                      accepted (cargo run --bin ... lines included)
#   anything else                  must be a known tool (curl, redis-cli, psql, docker, ...)
#
# Repository paths named anywhere in those commands, in Markdown links and in `inline code`
# (bin/, scripts/, docs/, deploy/, tests/, migrations/, src/, assets/, examples/, and the
# top-level files) must exist; runtime paths (logs/, run/, data/, target/) are not checked.
#
# Prints one line per problem and a summary; exits 1 if any. Needs python3.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

for arg in "$@"; do
  case "$arg" in
    -h | --help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  esac
done
docs=("$@")
[ ${#docs[@]} -gt 0 ] || docs=(README.md docs/operations.md)

command -v python3 >/dev/null || { echo "FAIL: python3 is required"; exit 1; }

BIN=$ROOT/target/debug/messaging-service
if [ ! -x "$BIN" ]; then
  echo "[check-docs] building the debug binary to read its subcommands (cargo build)"
  cargo build --quiet --bin messaging-service
fi

# The binary's subcommands: "serve", "worker", ..., "dlq list", "keys create", ...
subcommands() { # [subcommand]: the names listed under "Commands:" of its --help
  "$BIN" "$@" --help | awk '/^Commands:/ {on = 1; next} on && /^[^ ]/ {on = 0} on && NF {print $1}'
}
SUBCOMMANDS=$(
  for sub in $(subcommands); do
    echo "$sub"
    [ "$sub" = help ] && continue
    for nested in $(subcommands "$sub" 2>/dev/null || true); do echo "$sub $nested"; done
  done
)
TARGETS=$(sed -n 's/^\([a-zA-Z0-9_-]\{1,\}\):.*/\1/p' Makefile | sort -u)

SUBCOMMANDS=$SUBCOMMANDS TARGETS=$TARGETS python3 - "${docs[@]}" <<'EOF'
import os
import re
import shlex
import sys

subcommands = set(os.environ["SUBCOMMANDS"].split("\n")) - {""}
targets = set(os.environ["TARGETS"].split())

# Tools the documentation may use that this repository does not provide.
KNOWN_TOOLS = {
    "apt-get", "awk", "cat", "cd", "chmod", "curl", "date", "docker", "docker-compose",
    "echo", "env", "export", "grep", "head", "jq", "kill", "kubectl", "less", "locust", "ls",
    "lsof", "mkdir", "open", "pg_isready", "pip", "promtool", "ps", "psql", "redis-cli",
    "rm", "sed", "seq", "sleep", "sqlite3", "ss", "sudo", "systemctl", "tail", "tee", "unset",
    "watch", "wc", "xargs",
    # Client generators the README shows for /openapi.json.
    "openapi-generator-cli", "openapi-python-client",
}
# Words that only prefix the real command.
PREFIXES = {"sudo", "env", "time", "nohup", "exec", "watch"}
SHELL_WORDS = {"for", "do", "done", "while", "if", "then", "fi", "else", "{", "}", "(", ")"}
CHECKED_DIRS = ("bin/", "scripts/", "docs/", "deploy/", "tests/", "migrations/", "src/",
                "assets/", "examples/")
TOP_FILES = {"Makefile", "Dockerfile", "docker-compose.yml", "README.md", "Cargo.toml",
             ".env.example"}
BINARY = re.compile(r"^(\./)?(target/[a-z]+/)?messaging-service$")

problems = []


def problem(where, text):
    problems.append(f"{where}: {text}")
    print(f"FAIL: {where}: {text}")


def repo_path(token):
    """The repository path a token names, or None when it names none to check."""
    token = token.strip("'\"`,;:()").split("#")[0]
    token = token[2:] if token.startswith("./") else token
    if not token or "*" in token or "{" in token or "$" in token or "…" in token:
        return None
    if token.startswith(CHECKED_DIRS) or token in TOP_FILES:
        return token.split(":")[0]
    return None


def check_path(where, token):
    path = repo_path(token)
    if path and not os.path.exists(path):
        problem(where, f"names {path}, which does not exist")


def fenced_blocks(text):
    """(line number, line) of every line inside ```bash / ```sh / ```shell blocks."""
    lang, out = None, []
    for number, line in enumerate(text.splitlines(), 1):
        fence = re.match(r"^\s*```(\S*)", line)
        if fence:
            lang = None if lang is not None else fence.group(1)
            continue
        if lang in ("bash", "sh", "shell"):
            out.append((number, line))
    return out


def logical_lines(lines):
    """Joins backslash continuations; drops comments and output lines."""
    buf, start = "", None
    for number, line in lines:
        if start is None:
            start = number
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        buf += line
        yield start, buf
        buf, start = "", None
    if buf:
        yield start, buf


def commands(line):
    """The commands of one shell line, each as a list of words (comments removed)."""
    try:
        lexer = shlex.shlex(line, posix=True, punctuation_chars="|&;()")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        words = list(lexer)
    except ValueError:
        return None
    out, current = [], []
    for word in words:
        if word and set(word) <= set("|&;()"):
            if current:
                out.append(current)
            current = []
        else:
            current.append(word)
    if current:
        out.append(current)
    return out


def check_command(where, words):
    while words and (re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]) or words[0] in PREFIXES):
        words = words[1:]
        # watch's and sudo's own options
        while words and words[0].startswith("-"):
            words = words[1:]
    if not words or words[0] in SHELL_WORDS:
        return
    first, rest = words[0], words[1:]
    for word in rest:
        check_path(where, word)
    if first == "make":
        named = [w for w in rest if not w.startswith("-") and "=" not in w]
        if not named:
            problem(where, "`make` without a target (name the target the reader should run)")
        for target in named:
            if target not in targets:
                problem(where, f"make target `{target}` is not in the Makefile")
    elif BINARY.match(first):
        args = [w for w in rest if not w.startswith("-")]
        if not args:
            return
        if args[0] not in subcommands:
            problem(where, f"`messaging-service {args[0]}` is not a subcommand (see --help)")
        elif len(args) > 1 and any(s.startswith(args[0] + " ") for s in subcommands):
            nested = args[1]
            if f"{args[0]} {nested}" not in subcommands:
                problem(where, f"`messaging-service {args[0]} {nested}` is not a subcommand")
    elif first == "cargo":
        return
    elif first in ("python3", "python", "bash", "sh"):
        script = next((w for w in rest if not w.startswith("-")), None)
        if script and script not in ("-m", "-c") and not os.path.exists(script):
            problem(where, f"{first} runs {script}, which does not exist")
    elif "/" in first:
        path = first[2:] if first.startswith("./") else first
        if not os.path.isfile(path):
            problem(where, f"`{first}` does not exist")
        elif not os.access(path, os.X_OK):
            problem(where, f"`{first}` is not executable")
    elif first not in KNOWN_TOOLS:
        problem(where, f"`{first}` is neither ours (make target, binary, script) nor a known tool")


checked = 0
for doc in sys.argv[1:]:
    if not os.path.exists(doc):
        problem(doc, "missing")
        continue
    text = open(doc, encoding="utf-8").read()
    for number, line in logical_lines(fenced_blocks(text)):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        where = f"{doc}:{number}"
        parsed = commands(stripped)
        if parsed is None:
            problem(where, f"cannot parse `{stripped}`")
            continue
        for words in parsed:
            checked += 1
            check_command(where, words)
    # Markdown links to files of the repository, and `inline code` naming one.
    base = os.path.dirname(doc)
    for number, line in enumerate(text.splitlines(), 1):
        for link in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", line):
            if "://" in link or link.startswith("mailto:"):
                continue
            path = os.path.normpath(os.path.join(base, link))
            if not os.path.exists(path):
                problem(f"{doc}:{number}", f"links to {link}, which does not exist")
        for code in re.findall(r"`([^`\s]+)`", line):
            check_path(f"{doc}:{number}", code)

print(f"Summary: {checked} commands in {', '.join(sys.argv[1:])} checked, {len(problems)} problems")
sys.exit(1 if problems else 0)
EOF
