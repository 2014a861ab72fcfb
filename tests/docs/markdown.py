#!/usr/bin/env python3
"""The Markdown check of ordo's documentation (run by .ci/run), and the block extractor
that tests/docs/readme.sh runs the README's commands with.

    python3 tests/docs/markdown.py check              # every document below; exit 1 on a finding
    python3 tests/docs/markdown.py blocks FILE MARK   # the shell blocks of FILE marked MARK

The check, per document:
- code fences are balanced (none left open at the end) and every opening fence names its
  language (a bare ``` after a closing one is how a whole page turns into one block);
- every relative link and image resolves to a file in the repository, and every #anchor
  to a heading of the page it points at (GitHub's anchors);
- every shell block (sh, bash, shell, console) says how it is kept true: `example` in
  its info string (shown, not run), or `run-by:PATH`, and then PATH either contains each of
  the block's commands or is a runner that selects the blocks marked `run-by:PATH` itself;
- nothing refers to documents outside the repository.
"""

import os
import re
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
DOCUMENTS = ["README.md", "README.zh-CN.md", "RELIABILITY.md", "BENCHMARKS.md"] + sorted(
    os.path.join("docs", name) for name in os.listdir(os.path.join(ROOT, "docs")) if name.endswith(".md")
)
SHELLS = {"sh", "bash", "shell", "console", "zsh"}
FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})(.*)$")
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
OUTSIDE = [
    (re.compile(r"\bSPEC\b"), "the product specification is not in the repository"),
    (re.compile(r"\.\./shared\b"), "a path outside the repository"),
    (re.compile(r"\bthe [a-z-]+ issue\b"), "an issue tracker entry is not in the repository"),
]


def parse(text):
    """(blocks, prose lines, problems): blocks are (line, info, body lines)."""
    blocks, prose, problems = [], [], []
    open_fence = None
    for number, line in enumerate(text.split("\n"), start=1):
        match = FENCE.match(line)
        if open_fence is None:
            if match:
                marker, info = match.group(2), match.group(3).strip()
                if marker[0] == "`" and "`" in info:
                    prose.append((number, line))
                    continue
                if not info:
                    problems.append((number, "a code fence opens without a language (is it meant to close one?)"))
                open_fence = (number, marker, info, [])
            else:
                prose.append((number, line))
        else:
            start, marker, info, body = open_fence
            if match and match.group(2)[0] == marker[0] and len(match.group(2)) >= len(marker) and not match.group(3).strip():
                blocks.append((start, info, body))
                open_fence = None
            else:
                body.append(line)
    if open_fence is not None:
        problems.append((open_fence[0], "this code fence is never closed: the rest of the page renders as code"))
    return blocks, prose, problems


def slug(heading):
    heading = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    heading = heading.replace("`", "").strip().lower()
    heading = re.sub(r"[^\w\- ]", "", heading)
    return heading.replace(" ", "-")


def anchors(path):
    try:
        text = open(path, encoding="utf-8").read()
    except OSError:
        return set()
    _, prose, _ = parse(text)
    seen, found = {}, set()
    for _, line in prose:
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            base = slug(match.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
    return found


def commands(body):
    """The block's commands: continuation lines joined, comments and blank lines dropped."""
    joined, current = [], ""
    for line in body:
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1].rstrip() + " "
            continue
        current += line
        joined.append(current)
        current = ""
    if current:
        joined.append(current)
    found = []
    for line in joined:
        line = re.sub(r"\s{2,}#.*$", "", line).strip()
        line = re.sub(r"^\$\s+", "", line)
        if line and not line.startswith("#"):
            found.append(" ".join(line.split()))
    return found


def runs(script, command):
    """Does the script (comments left out) run this command? Leading VAR=value assignments
    may be made apart from it (`export VAR=...`, `VAR="${VAR:-value}"`)."""
    words = command.split()
    while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
        name, _, value = words.pop(0).partition("=")
        if name not in script or value not in script:
            return False
    return " ".join(words) in script


def marks(info):
    words = info.split()
    return words[0] if words else "", words[1:]


def check_document(name):
    path = os.path.join(ROOT, name)
    text = open(path, encoding="utf-8").read()
    blocks, prose, problems = parse(text)
    here = os.path.dirname(path)
    for number, line in prose:
        stripped = re.sub(r"`[^`]*`", "", line)
        for target in LINK.findall(stripped):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):
                continue
            file_part, _, anchor = target.partition("#")
            resolved = os.path.normpath(os.path.join(here, file_part)) if file_part else path
            if not resolved.startswith(ROOT):
                problems.append((number, f"{target}: leaves the repository"))
            elif not os.path.exists(resolved):
                problems.append((number, f"{target}: no such file"))
            elif anchor and resolved.endswith(".md") and anchor not in anchors(resolved):
                problems.append((number, f"{target}: no heading #{anchor} there"))
        for pattern, why in OUTSIDE:
            if pattern.search(stripped):
                problems.append((number, f"{why}: {line.strip()[:80]}"))
    shell_blocks = 0
    for number, info, body in blocks:
        language, words = marks(info)
        if language not in SHELLS:
            continue
        shell_blocks += 1
        runners = [w[len("run-by:"):] for w in words if w.startswith("run-by:")]
        if "example" in words:
            continue
        if not runners:
            problems.append((number, "a shell block neither run (run-by:PATH) nor marked as an example"))
            continue
        for runner in runners:
            runner_path = os.path.join(ROOT, runner)
            if not os.path.isfile(runner_path):
                problems.append((number, f"run-by:{runner}: no such file"))
                continue
            script = open(runner_path, encoding="utf-8").read()
            if f"run-by:{runner}" in script:
                continue  # the runner selects its blocks by this mark
            code = [l for l in script.split("\n") if not l.lstrip().startswith("#")]
            flat = " ".join(" ".join(code).split())
            for command in commands(body):
                if not runs(flat, command):
                    problems.append((number, f"run-by:{runner} does not run: {command[:70]}"))
    return problems, shell_blocks


def main(argv):
    if len(argv) >= 2 and argv[1] == "blocks":
        name, mark = argv[2], argv[3]
        blocks, _, _ = parse(open(os.path.join(ROOT, name), encoding="utf-8").read())
        for number, info, body in blocks:
            language, words = marks(info)
            if language in SHELLS and mark in words:
                print(f"# {name}:{number}")
                print("\n".join(body))
        return 0
    if len(argv) >= 2 and argv[1] == "check":
        failed = 0
        for name in DOCUMENTS:
            problems, shell_blocks = check_document(name)
            for number, why in problems:
                print(f"{name}:{number}: {why}")
            failed += len(problems)
            print(f"{name}: {'ok' if not problems else f'{len(problems)} problem(s)'} ({shell_blocks} shell blocks)")
        print(f"markdown check: {len(DOCUMENTS) - 0} documents, {failed} problem(s)")
        return 1 if failed else 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
