"""Write the three files CodeDeployToECS reads (imageDetail.json, taskdef.json, appspec.yml) into a folder.

The `${NAME}` values come from the environment (CodeBuild's project variables); the `<IMAGE1_NAME>` and
`<TASK_DEFINITION>` placeholders are left for CodePipeline to fill. A missing variable stops the build with
a message naming it, before any file is written.

Usage: python pipeline-config/render.py OUT_DIR   (IMAGE_URI and the variables the files name must be set)
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from string import Template

HERE = Path(__file__).resolve().parent
TEMPLATES = ("taskdef.json", "appspec.yml")


def placeholders(text: str) -> set[str]:
    """The ${NAME} values a file needs."""
    return {
        match.group("braced")
        for match in Template.pattern.finditer(text)
        if match.group("braced") is not None
    }


def render(env: Mapping[str, str], source: Path = HERE) -> dict[str, str]:
    """Return file name -> content; ValueError names every missing variable or the file a value broke."""
    texts = {name: (source / name).read_text() for name in TEMPLATES}
    needed = set().union(*(placeholders(text) for text in texts.values())) | {"IMAGE_URI"}
    missing = sorted(name for name in needed if not env.get(name))
    if missing:
        raise ValueError(f"set these environment variables first: {', '.join(missing)}")
    files = {name: Template(text).substitute(env) for name, text in texts.items()}
    try:  # a value that breaks the JSON must fail the build here, not in CodeDeploy
        json.loads(files["taskdef.json"])
    except json.JSONDecodeError as err:
        raise ValueError(f"taskdef.json is not valid JSON once filled in: {err}") from None
    files["imageDetail.json"] = json.dumps({"ImageURI": env["IMAGE_URI"]}) + "\n"
    return files


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        files = render(os.environ)
    except ValueError as err:
        print(f"render.py: {err}", file=sys.stderr)
        return 1
    out = Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (out / name).write_text(content)
    print(f"render.py: wrote {', '.join(sorted(files))} to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
