"""Stage ``download``: fetch one dataset archive, resumable and md5-checked.

``python -m pipeline.stages.download --url URL --md5 HEX --out PATH [--config-key KEY]``

``--md5 ""`` skips the check (with a warning). See :func:`pipeline.data.archives.download`.
"""

from __future__ import annotations

import argparse
import logging

from pipeline.data.archives import ChecksumError, DownloadError, download

log = logging.getLogger("pipeline.download")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    p = argparse.ArgumentParser(prog="python -m pipeline.stages.download",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True)
    p.add_argument("--md5", required=True, help='expected md5 ("" skips verification)')
    p.add_argument("--out", required=True)
    p.add_argument("--config-key", default="", help="config key of the md5, for error messages")
    p.add_argument("--retries", type=int, default=5)
    p.add_argument("--timeout", type=float, default=60.0)
    a = p.parse_args(argv)
    try:
        download(a.url, a.out, a.md5, config_key=a.config_key, retries=a.retries,
                 timeout=a.timeout)
    except (ChecksumError, DownloadError) as e:
        log.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
