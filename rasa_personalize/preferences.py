"""Category preferences a shopper states, kept as tags: likes and dislikes.

"I love running" is the tag ``interested_in_running``, "stop showing me kitchen stuff"
the tag ``not_interested_in_kitchen``. Tags, because everything already reads them: the
decision rules (field ``tags``), the ``user_tags`` slot, content recommendations (likes)
and the recommendation filters (dislikes), erasure and export.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from rasa_personalize.store.records import TagRecord

LIKE_PREFIX: Final = "interested_in_"
DISLIKE_PREFIX: Final = "not_interested_in_"
# What a tag may hold, as tag rules name tags; 64 characters is the column's width.
TAG_NAME: Final = re.compile(r"[a-z0-9_]{1,64}")


def category_slug(category: str) -> str:
    """The part of a preference tag that names ``category``: ``Home & Garden`` ->
    ``home_garden``."""
    return re.sub(r"[^0-9a-z]+", "_", category.lower()).strip("_")


def preference_tag(category: str, *, liked: bool) -> str | None:
    """The tag of liking (or disliking) ``category``; None when no tag can name it (no
    letter or digit in it, or too long for a tag)."""
    slug = category_slug(category)
    tag = (LIKE_PREFIX if liked else DISLIKE_PREFIX) + slug
    return tag if slug and TAG_NAME.fullmatch(tag) else None


def is_dislike(tag: str) -> bool:
    """Whether ``tag`` says the shopper does not want a category."""
    return tag.startswith(DISLIKE_PREFIX)


def interest_tags(tags: Iterable[str], disliked: Iterable[str] = ()) -> tuple[str, ...]:
    """The ``tags`` that may be read as the shopper's interests: no dislike, nor the like
    of a category in ``disliked`` (a tag rule may still hold one the shopper turned down).
    """
    turned_down = {LIKE_PREFIX + category_slug(category) for category in disliked}
    return tuple(tag for tag in tags if not is_dislike(tag) and tag not in turned_down)


def disliked_categories(
    tags: Iterable[str], categories: Iterable[str], *, asked: str | None = None
) -> frozenset[str]:
    """The catalogue ``categories`` the shopper said they do not want, except ``asked``:
    asking for a category in this request overrides an earlier "no more of that".
    """
    disliked = {tag.removeprefix(DISLIKE_PREFIX) for tag in tags if is_dislike(tag)}
    if not disliked:
        return frozenset()
    return frozenset(
        category
        for category in categories
        if category != asked and category_slug(category) in disliked
    )


@dataclass(frozen=True)
class CategoryPreference:
    """One stated like or dislike, as a profile shows it.

    Attributes:
        category: the category the tag names (underscores read as spaces).
        liked: True for a like, False for a dislike.
        source: who wrote the tag (``chat``: the shopper said it; ``rule``, ``seed``...).
        updated_at: when it was last written.
    """

    category: str
    liked: bool
    source: str
    updated_at: datetime


def preferences_of(tags: Collection[TagRecord]) -> tuple[CategoryPreference, ...]:
    """The likes and dislikes among a customer's tags, newest first (then by category)."""
    found = []
    for record in tags:
        if is_dislike(record.tag):
            slug, liked = record.tag.removeprefix(DISLIKE_PREFIX), False
        elif record.tag.startswith(LIKE_PREFIX):
            slug, liked = record.tag.removeprefix(LIKE_PREFIX), True
        else:
            continue
        category = slug.replace("_", " ")
        found.append(CategoryPreference(category, liked, record.source, record.updated_at))
    found.sort(key=lambda preference: preference.category)
    found.sort(key=lambda preference: preference.updated_at, reverse=True)
    return tuple(found)


PreferenceStatus = Literal["stored", "needs_login", "not_stored", "unknown_category"]


@dataclass(frozen=True)
class ChatPreference:
    """What became of a like or dislike said in the chat.

    Attributes:
        status: ``stored`` in the customer's profile; ``needs_login``: an anonymous
            visitor, or a ``user_id`` claim nobody proved while proof is required (nothing
            stored); ``not_stored``: their answers do not allow personalization, the store
            does not know them, or it is unavailable; ``unknown_category``: no catalogue
            category fits the words.
        category: the catalogue category meant; None when none is known to fit.
    """

    status: PreferenceStatus
    category: str | None = None

    @property
    def stored(self) -> bool:
        """Whether the preference is in the customer's profile now."""
        return self.status == "stored"
