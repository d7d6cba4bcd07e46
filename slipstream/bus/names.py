"""Kafka's rules for topic names, checked by both buses alike."""

from __future__ import annotations

import re

__all__ = ["check_topic_name", "topic_name"]

_LEGAL = re.compile(r"[A-Za-z0-9._-]{1,249}")


def check_topic_name(topic: str) -> None:
    """Raise ValueError unless Apache Kafka accepts ``topic`` as a topic name.

    Tansu and the in-process bus would take any string; Kafka takes 1 to 249
    of ``A-Z a-z 0-9 . _ -`` and not ``.`` or ``..``.
    """
    if not isinstance(topic, str):
        raise TypeError(f"a topic name is a str, got {type(topic).__name__}")
    if not _LEGAL.fullmatch(topic) or topic in (".", ".."):
        raise ValueError(
            f"invalid topic name {topic!r}: use 1 to 249 of the characters "
            "A-Z a-z 0-9 . _ - (Kafka's rule)"
        )


def topic_name(raw: str) -> str:
    """Parser of a topic-name option: ``raw`` when Kafka accepts it.

    Raises:
        ValueError: Kafka would refuse the name.
    """
    try:
        check_topic_name(raw)
    except ValueError:
        raise ValueError("expected a topic name of 1 to 249 of A-Z a-z 0-9 . _ -") from None
    return raw
