"""Rank-0 console logging: non-zero ranks get a logger that drops everything, so call sites never branch."""

from __future__ import annotations

import logging
import sys

from med42_train.runtime.dist import dist_info

_FORMAT = "%(asctime)s %(levelname)s [%(name)s] %(message)s"


def get_logger(name: str = "med42") -> logging.Logger:
    logger = logging.getLogger(name)
    if getattr(logger, "_med42_configured", False):
        return logger
    logger.propagate = False
    if dist_info().is_main:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter(_FORMAT, datefmt="%H:%M:%S"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    else:
        logger.addHandler(logging.NullHandler())
        logger.setLevel(logging.CRITICAL + 1)
    logger._med42_configured = True  # type: ignore[attr-defined]
    return logger
