"""Step 3: the Dockerfile and .dockerignore, read without building anything.

These checks read the Dockerfile as Docker does (checks/dockerfile.py), so they
are fast and need no Docker engine. Step 4 then builds and runs the image,
which proves what these can only read.
"""

import json
import re
import shutil
import sys
import tempfile
from pathlib import Path, PurePosixPath

import pytest
from dockerfile import (
    Dockerfile,
    DockerfileError,
    Instruction,
    Stage,
    build_context,
    command_words,
    found_inside,
    is_ignored,
    parse,
    read_dockerignore,
)
from grading import learner_fail
from processes import run

pytestmark = [pytest.mark.step(3), pytest.mark.timeout(30)]

LESSON = "module-1/step-3-dockerfile.md"
SLIM_TAG = "python:3.12-slim-bookworm"
EXEC_CMD = '["uvicorn", "main:app", "--host", "0.0.0.0", "--port", "8000"]'

# Whatever compiles code. The builder stage may have them (it builds wheels);
# the runtime stage runs code and needs none of them.
COMPILER = re.compile(
    r"^(gcc|g\+\+|cc|c\+\+|clang|build-essential|build-base|gcc-c\+\+|rustc|cargo)"
    r"(-\d+(\.\d+)*)?$"
)
INSTALL = re.compile(
    r"\b(?:apt-get|apt|aptitude)\s+(?:-\S+\s+)*install\b|\bapk\s+(?:-\S+\s+)*add\b"
    r"|\b(?:dnf|yum|microdnf)\s+(?:-\S+\s+)*install\b"
)
REMOVE = re.compile(
    r"\b(?:apt-get|apt)\s+(?:-\S+\s+)*(?:purge|remove|autoremove)\b"
    r"|\bapk\s+(?:-\S+\s+)*del\b|\b(?:dnf|yum)\s+(?:-\S+\s+)*(?:remove|erase)\b"
)
PIP_INSTALL = re.compile(
    r"(?:^|[\s;&|(/])(?:pip3?(?:\.\d+)?|python3?(?:\.\d+)?\s+-m\s+pip)\s+install\b"
)
# Users every Debian or Alpine base image already has.
BASE_USERS = {"nobody", "daemon", "www-data", "nonroot", "guest"}


def shown(path: Path) -> str:
    """A path as the learner would type it: relative to here when it can be."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def load(collector_dir: Path) -> Dockerfile:
    """The learner's Dockerfile, parsed; a clear failure when there is none yet.

    Called by each check rather than used as a fixture, so that a missing
    Dockerfile shows as a failed check, not as an error in the grader.
    """
    path = collector_dir / "Dockerfile"
    if not path.is_file():
        learner_fail(
            f"There is no Dockerfile in {shown(collector_dir)}.",
            hint="Create it beside main.py and start with the builder stage.",
            lesson=f"{LESSON}#todo-3-1",
            todo="3.1",
        )
    try:
        parsed = parse(path)
    except DockerfileError as exc:
        learner_fail(
            f"Docker cannot read {shown(path)}: {exc}.",
            hint="Every instruction after the first FROM belongs to a stage; "
            "only ARG may come before it.",
            lesson=f"{LESSON}#todo-3-1",
            todo="3.1",
        )
    if not parsed.stages:
        learner_fail(
            f"{shown(path)} has no instructions yet, only comments.",
            hint=f"Start with TODO 3.1: a builder stage FROM {SLIM_TAG} "
            "that pip installs requirements.txt into /opt/venv.",
            lesson=f"{LESSON}#todo-3-1",
            todo="3.1",
        )
    return parsed


def describe(stage: Stage) -> str:
    name = f' "{stage.name}"' if stage.name else ""
    return f"The runtime stage{name} (FROM at line {stage.instruction.line})"


def shell_text(inst: Instruction) -> str:
    """A RUN's command as one line, whichever form it is written in."""
    if inst.exec_form is not None:
        return " ".join(inst.exec_form)
    return inst.args


def test_dockerfile_has_a_builder_and_a_runtime_stage(collector_dir: Path):
    """The Dockerfile has a builder stage and a runtime stage that copies from it."""
    dockerfile = load(collector_dir)
    stages = dockerfile.stages
    final = dockerfile.final
    if len(stages) < 2:
        learner_fail(
            f"The Dockerfile has one stage (FROM at line {final.instruction.line}): "
            "whatever pip and its build tools leave behind stays in the image.",
            expected="a builder stage that installs the requirements, and a second "
            "FROM, the runtime stage, that copies only the installed packages",
            hint="Name the first stage (FROM ... AS builder), start the runtime stage "
            "with its own FROM, and COPY --from=builder what it needs.",
            lesson=f"{LESSON}#todo-3-1",
            todo="3.1",
        )
    earlier = {str(stage.index) for stage in stages[:-1]}
    earlier |= {stage.name for stage in stages[:-1] if stage.name}
    copies = [
        inst
        for inst in final.body
        if inst.keyword in {"COPY", "ADD"}
        and inst.flags.get("from", "").lower() in earlier
    ]
    # Also when the runtime stage is built FROM the builder: then everything
    # the builder left behind is in the image, as in a single stage.
    if not copies:
        why = "so the builder stage does no work for it"
        if final.parent is not None:
            parent = final.parent.name or final.parent.index
            why = (
                f"and it starts FROM the stage {parent}, so all that stage left "
                "behind is in the image"
            )
        learner_fail(
            f"{describe(final)} copies nothing from an earlier stage, {why}.",
            expected="COPY --from=builder /opt/venv /opt/venv in the runtime stage",
            hint="Copy the installed packages across from the builder stage.",
            lesson=f"{LESSON}#todo-3-2",
            todo="3.2",
        )


def image_name_and_tag(reference: str) -> tuple[str, str]:
    """Split python:3.12-slim or registry:5000/lib/python:3.12@sha256:... in two."""
    reference = reference.split("@", 1)[0].lower()
    name, _, tag = reference.rpartition(":")
    if not name or "/" in tag:
        return reference, "latest"
    return name, tag


def test_runtime_stage_starts_from_a_slim_or_alpine_image(collector_dir: Path):
    """The runtime stage starts from a slim or alpine image."""
    dockerfile = load(collector_dir)
    final = dockerfile.final
    base = final.root_image()
    name, tag = image_name_and_tag(base)
    # Distroless images are smaller still and have no shell; they pass too.
    if "slim" in tag or "alpine" in tag or "distroless" in name:
        return
    via = ""
    if final.parent is not None:
        first = final.chain()[0].instruction.line
        via = f", through the stage it builds on (line {first})"
    learner_fail(
        f"{describe(final)} starts from {base}{via}: a full image that brings "
        "compilers and hundreds of megabytes the service never uses.",
        expected=f"a slim or alpine tag, such as {SLIM_TAG}",
        hint=f"Start the runtime stage FROM {SLIM_TAG}, the same tag as the builder.",
        lesson=f"{LESSON}#todo-3-2",
        todo="3.2",
    )


def installed_packages(command: str) -> list[str]:
    """Packages an apt-get/apk/dnf install in a shell command names."""
    packages = []
    for part in re.split(r"&&|\|\||;|\|", command):
        match = INSTALL.search(part)
        if not match:
            continue
        for word in part[match.end() :].split():
            if not word.startswith("-") and "$" not in word:
                packages.append(word.split("=", 1)[0])
    return packages


def removed_in_same_layer(command: str, package: str) -> bool:
    """Whether the same RUN removes the package again (or its apk --virtual group)."""
    removals = [part for part in re.split(r"&&|\|\||;", command) if REMOVE.search(part)]
    if not removals:
        return False
    groups = set(re.findall(r"(?:--virtual|-t)[ =](\S+)", command))
    names = {package} | groups
    return any(name in part.split() for part in removals for name in names)


def leaves_pip_cache(command: str, env: dict[str, str]) -> bool:
    """Whether a pip install in this command keeps its download cache in the layer."""
    if not PIP_INSTALL.search(command) or env.get("PIP_NO_CACHE_DIR"):
        return False
    for part in re.split(r"&&|\|\||;", command):
        if PIP_INSTALL.search(part) and "--no-cache-dir" not in part:
            purged = "pip cache purge" in command or re.search(
                r"rm\s+-\S*r\S*\s+.*\.cache", command
            )
            return not purged
    return False


def test_runtime_stage_has_no_compilers_or_pip_cache(collector_dir: Path):
    """The runtime stage installs no compilers and keeps no pip download cache."""
    dockerfile = load(collector_dir)
    final = dockerfile.final
    env = final.environment()
    for inst in final.all_instructions():
        if inst.keyword != "RUN":
            continue
        command = shell_text(inst)
        for package in installed_packages(command):
            if COMPILER.match(package) and not removed_in_same_layer(command, package):
                learner_fail(
                    f"RUN at {inst.lines} installs {package} in the runtime stage: "
                    "a compiler the running service never uses, and the image "
                    "keeps it.",
                    expected="compilers only in the builder stage, whose files stay "
                    "behind unless you COPY them",
                    hint="Move this install into the builder stage; the runtime "
                    "stage only needs what the builder produced.",
                    lesson=f"{LESSON}#todo-3-2",
                    todo="3.2",
                )
        if leaves_pip_cache(command, env):
            learner_fail(
                f"RUN at {inst.lines} runs pip install in the runtime stage without "
                "--no-cache-dir: pip's download cache stays in the image.",
                expected="pip install --no-cache-dir (or install in the builder stage "
                "and copy the result)",
                hint="Add --no-cache-dir to the pip install, or better, install in "
                "the builder stage only.",
                lesson=f"{LESSON}#todo-3-2",
                todo="3.2",
            )


def created_users(stage: Stage) -> str:
    """The text of every RUN that creates a user, for looking a name up in."""
    runs = [shell_text(i) for i in stage.all_instructions() if i.keyword == "RUN"]
    return " ".join(text for text in runs if re.search(r"\b(useradd|adduser)\b", text))


def test_runtime_stage_runs_as_a_non_root_user(collector_dir: Path):
    """The runtime stage switches to a user that is not root."""
    dockerfile = load(collector_dir)
    final = dockerfile.final
    user_line = final.last("USER")
    if user_line is None:
        learner_fail(
            f"{describe(final)} never sets USER, so the container runs as root.",
            expected="USER 10001:10001 (the appuser of TODO 3.3) before CMD",
            hint="Create appuser with a fixed UID (TODO 3.3), then switch to it by "
            "number with USER before the CMD.",
            lesson=f"{LESSON}#todo-3-5",
            todo="3.5",
        )
    user = user_line.args.split(":", 1)[0].strip()
    if user in {"", "root", "0"}:
        learner_fail(
            f"USER at {user_line.lines} is {user_line.args!r}: the container would "
            "still run as root.",
            expected="USER 10001:10001",
            hint="Switch to the appuser you created, by its number, as the last USER.",
            lesson=f"{LESSON}#todo-3-5",
            todo="3.5",
        )
    named = rf"(?<![\w-]){re.escape(user)}(?![\w-])"
    created = user.isdigit() or user in BASE_USERS
    if not created and not re.search(named, created_users(final)):
        learner_fail(
            f"USER at {user_line.lines} names {user!r}, but no RUN in the "
            "runtime stage creates that user: the container would not start "
            '("unable to find user").',
            expected=f"a useradd (or adduser) of {user} before the USER line",
            hint="Create the user in the runtime stage (TODO 3.3), or switch to "
            "it by number: USER 10001:10001.",
            lesson=f"{LESSON}#todo-3-3",
            todo="3.3",
        )


def uvicorn_arguments(words: list[str]) -> list[str] | None:
    """The words after `uvicorn` when the command starts uvicorn, else None.

    Accepted: uvicorn ..., /opt/venv/bin/uvicorn ..., python -m uvicorn ...,
    each optionally behind an init such as tini or dumb-init.
    """
    words = list(words)
    if words and PurePosixPath(words[0]).name in {"tini", "dumb-init"}:
        words = words[1:]
        if words and words[0] == "--":
            words = words[1:]
    if not words:
        return None
    program = PurePosixPath(words[0]).name
    if program == "uvicorn":
        return words[1:]
    if re.fullmatch(r"python3?(\.\d+)?", program) and words[1:3] == ["-m", "uvicorn"]:
        return words[3:]
    return None


def option(arguments: list[str], name: str) -> str | None:
    """The value of `--name value` or `--name=value`, the last one winning."""
    value = None
    for index, word in enumerate(arguments):
        if word == name and index + 1 < len(arguments):
            value = arguments[index + 1]
        elif word.startswith(name + "="):
            value = word.split("=", 1)[1]
    return value


def test_command_runs_uvicorn_in_exec_form_on_0_0_0_0_port_8000(collector_dir: Path):
    """CMD starts uvicorn in exec form, listening on 0.0.0.0 port 8000."""
    dockerfile = load(collector_dir)
    final = dockerfile.final
    entrypoint, cmd = final.command()
    if entrypoint is None and cmd is None:
        learner_fail(
            f"{describe(final)} has no CMD, so the image does not start the service.",
            expected=f"CMD {EXEC_CMD}",
            hint="End the Dockerfile with an exec-form CMD that starts uvicorn.",
            lesson=f"{LESSON}#todo-3-5",
            todo="3.5",
        )
    for inst in (entrypoint, cmd):
        if inst is not None and inst.exec_form is None:
            learner_fail(
                f"{inst.keyword} at {inst.lines} is in shell form: Docker runs it "
                "through /bin/sh -c, so uvicorn is not process 1 and never receives "
                "the SIGTERM that `docker stop` sends.",
                got=f"{inst.keyword} {inst.args}",
                expected=f"{inst.keyword} {EXEC_CMD}",
                hint="Write the command as a JSON array of strings, in double quotes.",
                lesson=f"{LESSON}#todo-3-5",
                todo="3.5",
            )
    words = command_words(entrypoint) + command_words(cmd)
    where = " and ".join(i.keyword + " at " + i.lines for i in (entrypoint, cmd) if i)
    arguments = uvicorn_arguments(words)
    if arguments is None:
        learner_fail(
            f"The command ({where}) does not start uvicorn.",
            got=json.dumps(words),
            expected=EXEC_CMD,
            hint="Start uvicorn itself (or python -m uvicorn) so it is process 1.",
            lesson=f"{LESSON}#todo-3-5",
            todo="3.5",
        )
    env = final.environment()
    host = option(arguments, "--host") or env.get("UVICORN_HOST")
    port = option(arguments, "--port") or env.get("UVICORN_PORT") or "8000"
    if host not in {"0.0.0.0", "::", "[::]"}:
        learner_fail(
            f"The command ({where}) makes uvicorn listen on "
            f"{host or '127.0.0.1, its default'}: inside a container that address "
            "is unreachable from outside it, so port 8000 never answers.",
            got=json.dumps(words),
            expected='"--host", "0.0.0.0"',
            hint='Add "--host", "0.0.0.0" to the CMD.',
            lesson="troubleshooting.md#uvicorn-on-127",
            todo="3.5",
        )
    if port != "8000":
        learner_fail(
            f"The command ({where}) makes uvicorn listen on port {port}; Compose "
            "publishes 8000 and the lessons send requests there.",
            got=json.dumps(words),
            expected='"--port", "8000"',
            hint='Use "--port", "8000".',
            lesson=f"{LESSON}#todo-3-5",
            todo="3.5",
        )


def test_healthcheck_works_without_curl(collector_dir: Path):
    """A HEALTHCHECK asks /health with a tool the runtime image has.

    Slim (Debian) images have neither curl nor wget, and alpine has no curl.
    Alpine does have wget, as part of busybox, so a wget healthcheck passes on
    an alpine base; on a slim base curl or wget passes only when the runtime
    stage installs it.
    """
    dockerfile = load(collector_dir)
    final = dockerfile.final
    check = final.last("HEALTHCHECK")
    if check is None or check.args.strip().upper() == "NONE":
        learner_fail(
            f"{describe(final)} has no HEALTHCHECK, so Docker (and Compose's "
            "--wait) cannot tell a started container from a working one.",
            expected='HEALTHCHECK CMD ["python", "-c", "import urllib.request; '
            "urllib.request.urlopen('http://127.0.0.1:8000/health')\"]",
            hint="Add a HEALTHCHECK that fetches /health with Python's urllib.",
            lesson=f"{LESSON}#todo-3-4",
            todo="3.4",
        )
    command = " ".join(check.exec_form) if check.exec_form else check.args
    _, tag = image_name_and_tag(final.root_image())
    installed = {
        package
        for inst in final.all_instructions()
        if inst.keyword == "RUN"
        for package in installed_packages(shell_text(inst))
    }
    for tool in ("curl", "wget"):
        if not re.search(rf"(?<![\w-]){tool}(?![\w-])", command) or tool in installed:
            continue
        if tool == "wget" and "alpine" in tag:
            continue  # busybox wget is part of every alpine image
        learner_fail(
            f"HEALTHCHECK at {check.lines} calls {tool}, which "
            f"{final.root_image()} does not have: the check fails every time and "
            "the container is marked unhealthy.",
            got=command,
            expected="a healthcheck in Python, which the image has: "
            'python -c "import urllib.request; urllib.request.urlopen(...)"',
            hint=f"Replace {tool} with Python's urllib.request.urlopen on "
            "http://127.0.0.1:8000/health.",
            lesson="troubleshooting.md#curl-missing",
            todo="3.4",
        )


def size(count: int) -> str:
    return f"{count / 1e6:.1f} MB" if count >= 1e6 else f"{count / 1e3:.0f} kB"


def folder_bytes(folder: Path) -> int:
    total = 0
    for path in folder.rglob("*"):
        try:
            if path.is_file() and not path.is_symlink():
                total += path.stat().st_size
        except OSError:
            continue
    return total


# What .dockerignore must keep out, with a path inside each to test the rules on.
MUST_IGNORE = {
    ".venv": ".venv/pyvenv.cfg",
    ".git": ".git/HEAD",
    "__pycache__": "__pycache__/main.cpython-312.pyc",
}
# What the image needs from the folder.
MUST_SEND = ("main.py", "config.py", "requirements.txt")


def test_dockerignore_keeps_venv_git_and_caches_out(collector_dir: Path):
    """.dockerignore keeps virtual environments, .git and caches out of the build."""
    ignore_file = collector_dir / ".dockerignore"
    patterns = read_dockerignore(ignore_file)
    # What is on disk now and would reach Docker: judged by Docker's own rules.
    total, _ = build_context(collector_dir)
    sent = [
        f"{path}/ ({kind}, {size(folder_bytes(collector_dir / path))})"
        for path, kind in found_inside(collector_dir)
        if not is_ignored(path, patterns)
    ]
    sending = f"`docker build` would send {size(total)}"
    if sent:
        sending += ", including " + ", ".join(sent)
    if not ignore_file.is_file():
        learner_fail(
            f"There is no .dockerignore in {shown(collector_dir)}: {sending}.",
            expected=".dockerignore listing .venv/, .git/, __pycache__/ and the like",
            hint="Create .dockerignore beside the Dockerfile and list what must stay "
            "out of the build context.",
            lesson="troubleshooting.md#dockerignore",
            todo="3.6",
        )
    missing = [
        name for name, sample in MUST_IGNORE.items() if not is_ignored(sample, patterns)
    ]
    if missing or sent:
        listed = "lists nothing yet, so it lets" if not patterns else "lets"
        learner_fail(
            f".dockerignore {listed} {', '.join(missing) or 'these'} into the build "
            f"context: {sending}.",
            expected="each of "
            + ", ".join(f"{name}/" for name in MUST_IGNORE)
            + " left out",
            hint="Add a line for each folder, such as .venv/ (a trailing / is "
            "optional; **/__pycache__ covers sub-folders too).",
            lesson=f"{LESSON}#todo-3-6",
            todo="3.6",
        )
    needed = [name for name in MUST_SEND if is_ignored(name, patterns)]
    if needed:
        learner_fail(
            f".dockerignore also leaves out {', '.join(needed)}, which the image "
            "needs: COPY cannot find what is not in the build context.",
            expected="your code and requirements.txt sent to Docker",
            hint="Remove the pattern that matches them (a broad * or *.py line?).",
            lesson=f"{LESSON}#todo-3-6",
            todo="3.6",
        )


def hadolint_command() -> str | None:
    """hadolint from the course's .venv (bootstrap installs it), else from PATH."""
    beside = Path(sys.executable).parent / "hadolint"
    return str(beside) if beside.is_file() else shutil.which("hadolint")


PRAGMA = re.compile(r"#\s*hadolint\s+(?:global\s+)?ignore\s*=", re.I)


def test_dockerfile_passes_hadolint(collector_dir: Path):
    """hadolint finds nothing, and every rule it is told to ignore has a reason."""
    dockerfile = load(collector_dir)
    for number, text in enumerate(dockerfile.lines, start=1):
        if not PRAGMA.match(text.strip()):
            continue
        reason = dockerfile.comment_above(number)
        if not reason or PRAGMA.match("#" + reason):
            learner_fail(
                f"Line {number} tells hadolint to ignore a rule without saying why: "
                f"{text.strip()}",
                expected="a comment line just above it that gives the reason",
                hint="Write why the rule does not apply here on the line above, or "
                "fix what the rule points at and drop the ignore.",
                lesson=f"{LESSON}#check-your-work",
            )
    program = hadolint_command()
    if program is None:
        learner_fail(
            "hadolint is not installed, so the Dockerfile cannot be linted.",
            hint="Run `python3 scripts/bootstrap.py`: it installs hadolint into .venv.",
            lesson="setup.md#python",
        )
    with tempfile.TemporaryDirectory() as scratch:
        # A config of our own: a global ignore list elsewhere on this machine
        # would silence rules without a reason in the Dockerfile.
        config = Path(scratch) / "hadolint.yaml"
        config.write_text("ignored: []\n")
        result = run(
            [program, "--no-color", "--config", str(config), str(dockerfile.path)],
            timeout=20,
        )
    if result.ok:
        return
    findings = [
        "    " + re.sub(r"^.*?:(\d+) ", r"line \1: ", line)
        for line in result.output.splitlines()
        if line.strip()
    ]
    learner_fail(
        f"hadolint finds {len(findings)} problem(s) in {shown(dockerfile.path)}:\n"
        + "\n".join(findings),
        expected="no findings (`hadolint Dockerfile` prints nothing)",
        hint="Fix each line hadolint names; the rule code (DL3008, ...) is "
        "explained on hadolint's wiki.",
        lesson=f"{LESSON}#check-your-work",
    )
