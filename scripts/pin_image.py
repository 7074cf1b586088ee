#!/usr/bin/env python3
"""Pin the app's image to tag@digest in the tree (``task image:pin -- --digest sha256:...``).

The image workflow (.github/workflows/image.yaml) prints the digest of what it pushed; Renovate
(.renovaterc.json) pins it by itself once the image exists. This is the manual way, e.g. for a fork:

    scripts/pin_image.py --image ghcr.io/<you>/kokoro-api --tag 0.1.0 --digest sha256:<64 hex>

Every ``image:`` line of the app's image (the Deployment, the smoke-test Job) is rewritten the same way;
an all-zero or malformed digest is refused.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
FILES = (
    "kubernetes/apps/ai-services/kokoro-api/app/deployment.yaml",
    "kubernetes/components/smoke-test/job.yaml",
)
IMAGE_LINE = re.compile(
    r"^(?P<indent>\s*image:\s*)(?P<ref>\S*/kokoro-api(?::[\w.-]+)?(?:@sha256:[0-9a-f]*)?)\s*$", re.M
)
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
TAG = re.compile(r"^[\w][\w.-]{0,127}$")


def pin(root: Path, image: str | None, tag: str | None, digest: str) -> list[str]:
    if not DIGEST.match(digest) or digest == "sha256:" + "0" * 64:
        raise ValueError(f"digest must be sha256: and 64 hex digits, not all zero: {digest!r}")
    changed = []
    for rel in FILES:
        path = root / rel
        text = path.read_text()
        match = IMAGE_LINE.search(text)
        if match is None:
            raise ValueError(f"{rel}: no kokoro-api image line")
        ref = match.group("ref").split("@")[0]
        name, _, old_tag = ref.rpartition(":") if ":" in ref.rpartition("/")[2] else (ref, "", "")
        new_tag = tag or old_tag
        if not new_tag or not TAG.match(new_tag) or new_tag == "latest":
            raise ValueError(f"{rel}: a version tag is needed (--tag), got {new_tag!r}")
        new_ref = f"{image or name}:{new_tag}@{digest}"
        path.write_text(text[: match.start("ref")] + new_ref + text[match.end("ref") :])
        changed.append(f"{rel}: {new_ref}")
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--digest", required=True, help="sha256:<64 hex>, as the image workflow prints it")
    parser.add_argument("--tag", help="the version tag (default: keep the current one)")
    parser.add_argument("--image", help="the image name, e.g. ghcr.io/<you>/kokoro-api (default: keep)")
    parser.add_argument("--root", default=str(REPO_ROOT), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        for line in pin(Path(args.root), args.image, args.tag, args.digest):
            print(line)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
