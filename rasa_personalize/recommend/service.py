"""Serving recommendations: the fallback chain, business filters and the words around them.

Per request, the first strategy that can answer does, and later ones top the list up:

1. ``als``: the customer is in the trained model (the precomputed list when it is from
   the serving model version, else scored live). When they did something after the
   model's training data cutoff, their vector is recalculated from their whole history
   first (``rasa_personalize.recommend.incremental``) and precomputed lists are not used.
2. ``session``: not in the model, but with a history: a user vector is recalculated
   from it against the item factors.
3. ``content``: only interests (tags such as ``interested_in_running``) or a category
   (asked now, or the favourite): TF-IDF similarity, from the content model that
   ``personalize train`` fitted (none yet: this strategy is skipped, and logged once).
4. ``segment_popular``: most popular with customers of the same stored segment.
5. ``popular``: most popular overall.

When the decision rules choose ``bought_together``, products bought with the customer's
newest purchases (``rasa_personalize.recommend.associations``) come first, and the chain
above tops them up. "Something like X" (:meth:`RecommendationService.similar`) starts
from X instead: its partners under that strategy, else products like it by content.

Filters apply to every strategy: purchased items excluded (configurable; consumable
categories may repeat), in stock only, the asked category, none of the categories the
shopper said no to (``not_interested_in_<category>`` tags; asking for one now overrides
that), no sku twice. The chain ranks a pool of candidates by relevance
(``reranking.pool_depth``), and ``reranking.arrange`` picks the ``n`` shown from it: the
strategy within relevance, at most two per category, the rules' price cap, substitutes
of recent purchases last. The reason names the past
product most related to the first one shown (``rasa_personalize.recommend.reasons``).
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from itertools import islice
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from rasa_personalize.cache.precomputed import PRECOMPUTE_DEPTH
from rasa_personalize.errors import (
    InvalidInputError,
    NotFoundError,
    PersonalizeError,
    StoreUnavailableError,
)
from rasa_personalize.metrics import count_recommendation
from rasa_personalize.preferences import disliked_categories, interest_tags
from rasa_personalize.recommend.artifacts import AlsArtifact, ModelHolder, als_dir, content_dir
from rasa_personalize.recommend.association_artifacts import (
    AssociationArtifact,
    AssociationHolder,
    associations_dir,
)
from rasa_personalize.recommend.associations import ANCHOR_PURCHASES
from rasa_personalize.recommend.confidence import store_confidence
from rasa_personalize.recommend.content_artifacts import ContentArtifact, ContentHolder
from rasa_personalize.recommend.filters import (
    CandidateSet,
    ItemCatalogue,
    RecommendationFilters,
    Scored,
    merge_unique,
)
from rasa_personalize.recommend.incremental import (
    INLINE_HISTORY_ROWS,
    FreshVector,
    counted_kinds,
    fresh_vector,
    has_news,
    history_query,
)
from rasa_personalize.recommend.reasons import (
    MAX_PAST,
    RELATED_COSINE,
    PastProduct,
    ReasonContext,
    because_of,
    fallback_reason,
    like_reason,
    most_related,
    past_products,
)
from rasa_personalize.recommend.reranking import (
    ArrangeRequest,
    ListPolicy,
    arrange,
    pool_depth,
    repeatable,
    substitute_keys,
)
from rasa_personalize.recommend.resources import Resources, build_resources, read_inputs
from rasa_personalize.recommend.served import ServedModel
from rasa_personalize.store.catalogue import CustomerItems
from rasa_personalize.store.errors import DatabaseError
from rasa_personalize.store.history import CustomerHistory, HistoryQuery
from rasa_personalize.store.records import ProductRecord
from rasa_personalize.store.sql_store import SqlStore
from rasa_personalize.tracing import RECOMMEND_SPAN, Attributes, traced

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecommendationRequest:
    """Who is asking, and what the answer must respect."""

    customer_key: str
    segment: str = "new_visitor"
    tags: tuple[str, ...] = ()
    favorite_category: str | None = None
    category: str | None = None
    max_price: float | None = None
    strategy: str = "default"
    n: int = 3
    exclude_purchased: bool = True
    # Items already shown in this conversation: not shown again.
    shown: frozenset[str] = frozenset()
    # The time of the request (windows after a purchase); None: the clock now.
    now: datetime | None = None


@dataclass(frozen=True)
class Recommendation:
    """The answer: products best first, which strategy answered, and why."""

    products: tuple[ProductRecord, ...]
    source: str
    reason: str
    model_version: str | None = None
    # The catalogue category the request was narrowed to, if any.
    category: str | None = None


def _asked(_service: object, request: RecommendationRequest, *_: object) -> Attributes:
    return {
        "personalize.recommend.kind": "chain",
        "personalize.recommend.strategy": request.strategy,
    }


def _answered(answer: Recommendation) -> Attributes:
    return {
        "personalize.recommend.source": answer.source,
        "personalize.recommend.count": len(answer.products),
    }


class RecommendationService:
    """Recommends for one process: resources refreshed from the store, models hot-swapped."""

    def __init__(
        self,
        store: SqlStore,
        model_dir: Path,
        *,
        refresh_every_s: float = 300.0,
        model_check_every_s: float = 10.0,
        policy: ListPolicy | None = None,
    ) -> None:
        self.store = store
        self.models = ModelHolder(als_dir(model_dir), check_interval_s=model_check_every_s)
        self.content_models = ContentHolder(
            content_dir(model_dir), check_interval_s=model_check_every_s
        )
        self.associations = AssociationHolder(
            associations_dir(model_dir), check_interval_s=model_check_every_s
        )
        self.policy = policy or ListPolicy()
        self.refresh_every_s = refresh_every_s
        self._resources: Resources | None = None
        self._build: asyncio.Future[None] | None = None
        self._told_no_content = False
        self._confidence = store_confidence()
        self._counted_kinds = counted_kinds(self._confidence)

    async def resources(self) -> Resources:
        """The in-memory resources: built once, then refreshed in the background.

        The build is shielded: a caller that stops waiting (its action budget ran out)
        does not cancel it, so the next request finds the resources ready. A newly
        trained content model is picked up as soon as the next check for it finds it.
        """
        current = self._resources
        if current is not None:
            if self._build is None:
                stale = time.monotonic() - current.built_at > self.refresh_every_s
                if stale or self.content_models.refresh_due():
                    self._build = asyncio.ensure_future(
                        self._rebuild(only_for_new_content=not stale)
                    )
            return current
        if self._build is None:
            self._build = asyncio.ensure_future(self._rebuild())
        await asyncio.shield(self._build)
        if self._resources is None:
            raise StoreUnavailableError("recommendation resources could not be built")
        return self._resources

    async def wait_for_refresh(self) -> None:
        """Wait for a resources build in progress, if any (tests, orderly shutdown)."""
        build = self._build
        if build is not None:
            await asyncio.shield(build)

    async def warm_up(self) -> None:
        """Build the resources and load the model now rather than on the first request."""
        try:
            await self.resources()
            await self.models.get_async()
        except (PersonalizeError, DatabaseError, OSError) as error:
            logger.warning(
                "Recommendations not warmed up (%s); will retry on use.", type(error).__name__
            )

    def history_query(self, customer_key: str) -> HistoryQuery | None:
        """The history to read with this customer's items for the serving model (no I/O).

        None before a model is loaded. Passed to the store's customer read, so that the
        history comes in the same hop, and only when it is new to the model.
        """
        return history_query(self.models.artifact, customer_key, self._counted_kinds)

    async def _rebuild(self, *, only_for_new_content: bool = False) -> None:
        try:
            content = await self.content_models.get_async()
            current = self._resources
            if (
                only_for_new_content
                and current is not None
                and (content.version if content else None) == current.content_version
            ):
                return
            products, popularity_rows = await self._inputs(content, first=current is None)
            if content is None and products and not self._told_no_content:
                self._told_no_content = True
                logger.warning(
                    "No content model in %s yet: run `personalize train` to recommend by "
                    "interests and to find similar products; the other strategies answer "
                    "meanwhile.",
                    self.content_models.model_dir,
                )
            self._resources = await asyncio.to_thread(
                build_resources, products, popularity_rows, content
            )
        except (PersonalizeError, DatabaseError, OSError) as error:
            # Keep serving the last resources; the next request or refresh tries again.
            logger.warning(
                "Reading the catalogue for recommendations failed (%s).", type(error).__name__
            )
        finally:
            self._build = None

    async def _inputs(
        self, content: ContentArtifact | None, *, first: bool
    ) -> tuple[list[ProductRecord], Sequence[tuple[str, str | None, str, int]]]:
        """Catalogue and popularity counts: at first the counts training stored, so that
        a server is ready at once (grouping every interaction took 15 s at ten million);
        on each refresh the store's own, newer counts, or the stored ones if that fails
        (a large store past its statement limit), so the catalogue still refreshes."""
        if first:
            return await read_inputs(self.store, content)
        try:
            return await self.store.read_recommendation_inputs()
        except (PersonalizeError, DatabaseError) as error:
            if content is None:
                raise
            logger.info(
                "Popularity not re-counted (%s): the counts of the last training serve.",
                type(error).__name__,
            )
            return await read_inputs(self.store, content)

    @traced(RECOMMEND_SPAN, _asked, result=_answered)
    async def recommend(
        self, request: RecommendationRequest, items: CustomerItems | None
    ) -> Recommendation:
        """The fallback chain for one request (see the module docstring)."""
        resources = await self.resources()
        category = resolve_category(request.category, resources.categories)
        if category != request.category:
            request = replace(request, category=category)
        request, disliked = without_dislikes(request, resources.categories)
        artifact = await self.models.get_async()
        associations = await self.associations.get_async()
        items = items or CustomerItems(purchased=frozenset(), recent=())
        now = request.now or datetime.now(timezone.utc)
        exclude = set(request.shown)
        if request.exclude_purchased:
            exclude |= items.purchased - repeatable(
                items.purchases, now, resources.products, self.policy
            )
        # The price cap is not a filter here: it acts on the relevant candidates (arrange).
        filters = RecommendationFilters(
            n=request.n,
            exclude=frozenset(exclude),
            category=request.category,
            exclude_categories=disliked,
        )
        candidates = filters.candidates(resources.catalogue)
        depth = pool_depth(request.n)
        fresh = await self._fresh_vector(request.customer_key, items, artifact)
        arrange_request = ArrangeRequest(
            strategy=request.strategy,
            avoid=substitute_keys(
                items.purchases, now, resources.products, self.policy, resources.types
            ),
            # Asked for a category: every product is of it, the cap would empty the list.
            max_per_category=None if request.category else self.policy.max_per_category,
            max_price=request.max_price,
        )
        strategies = self._strategies(
            request=request,
            items=items,
            resources=resources,
            artifact=artifact,
            candidates=candidates,
            exclude=exclude,
            recalculated=fresh,
            associations=associations,
            # A precomputed list leaves out everything the customer has looked at; under
            # a price cap, what passes of their own interests is often just that (a cheap
            # item of their favourite category they viewed), so capped lists are ranked
            # from the model instead (a matrix-vector product).
            precomputed_usable=request.max_price is None,
        )
        ranked, merged = _pool(strategies, depth)
        arranged = arrange(
            [s.item_id for s in merged],
            request.n,
            resources.products,
            arrange_request,
            depth=depth,
            types=resources.types,
            arrivals=associations.arrivals if associations is not None else None,
        )
        products = [resources.products[sku] for sku in arranged]
        source = _lead_source(ranked, products)
        if products:
            count_recommendation(source)
        return Recommendation(
            category=category,
            products=tuple(products),
            source=source,
            reason=self._reason(
                source,
                request,
                items,
                resources=resources,
                artifact=artifact,
                associations=associations,
                products=products,
            ),
            model_version=artifact.version if artifact is not None else None,
        )

    def _reason(
        self,
        source: str,
        request: RecommendationRequest,
        items: CustomerItems,
        *,
        resources: Resources,
        artifact: AlsArtifact | None,
        associations: AssociationArtifact | None,
        products: Sequence[ProductRecord],
    ) -> str:
        """A true reason for the list (see ``rasa_personalize.recommend.reasons``)."""
        lead = products[0] if products else None
        context = ReasonContext(request.category, request.favorite_category, request.tags)
        related: PastProduct | None = None
        if lead is not None and source in {"als", "session", "bought_together"}:
            past = past_products(
                [sku for sku, _ in items.purchases[:MAX_PAST]] or sorted(items.purchased),
                list(items.recent),
            )
            if source == "bought_together" and associations is not None:
                model = associations.model
                related = most_related(
                    lead.sku,
                    [p for p in past if p.kind == "purchase"],
                    lambda sku, others: [model.score(other, sku) for other in others],
                    threshold=1e-9,
                )
            elif artifact is not None:
                related = most_related(
                    lead.sku, past, artifact.model.item_cosines, threshold=RELATED_COSINE
                )
        if related is not None:
            product = resources.products.get(related.sku)
            if product is not None:
                return because_of(related, product.title)
        return fallback_reason(source, lead, context)

    async def _fresh_vector(
        self, customer_key: str, items: CustomerItems, artifact: AlsArtifact | None
    ) -> FreshVector | None:
        """The customer's recalculated vector when their history is new to the model.

        The history normally came with the items (``history_query``); when it did not,
        or was read for another model, it is read here (one bounded query).
        """
        query = history_query(artifact, customer_key, self._counted_kinds)
        if artifact is None or query is None:
            return None
        history = items.history
        if history is None or not history.query.covers(query):
            if items.customer_id is None:
                return None
            history = await self._read_history(items.customer_id, query)
        if history is None or not has_news(history, query):
            return None
        if len(history.entries) > INLINE_HISTORY_ROWS:
            return await asyncio.to_thread(fresh_vector, artifact, history, self._confidence)
        return fresh_vector(artifact, history, self._confidence)

    async def _read_history(self, customer_id: int, query: HistoryQuery) -> CustomerHistory | None:
        try:
            return await self.store.load_customer_history(customer_id, query)
        except (PersonalizeError, DatabaseError, OSError) as error:
            # The trained vector still answers; only the newest interactions are missed.
            logger.warning("Reading a customer's history failed (%s).", type(error).__name__)
            return None

    def _strategies(
        self,
        *,
        request: RecommendationRequest,
        items: CustomerItems,
        resources: Resources,
        artifact: AlsArtifact | None,
        candidates: CandidateSet,
        exclude: set[str],
        recalculated: FreshVector | None,
        associations: AssociationArtifact | None = None,
        precomputed_usable: bool = True,
    ) -> list[tuple[str, Callable[[int], list[Scored]]]]:
        """The chain for this request, in order, as (source, depth -> scored) pairs."""
        chain: list[tuple[str, Callable[[int], list[Scored]]]] = []
        if request.strategy == "bought_together" and associations is not None:
            anchors = _newest_purchases(items, ANCHOR_PURCHASES)
            together = associations.model
            if anchors:
                chain.append(
                    (
                        "bought_together",
                        lambda depth: together.recommend(
                            anchors, depth, exclude=exclude, candidates=candidates
                        ),
                    )
                )
        model = artifact.model if artifact is not None else None
        # What training chose and serves: ALS, or ALS blended with EASE.
        served = artifact.served if artifact is not None else None
        known = model is not None and model.has_user(request.customer_key)
        if served is not None and recalculated is not None:
            # New interactions since training: the recalculated vector, never the stale
            # precomputed list or trained vector.
            vector, rows = recalculated.vector, recalculated.item_rows
            chain.append(
                (
                    "als" if known else "session",
                    lambda depth: served.recommend_for_vector(
                        vector, depth, item_rows=rows, exclude=exclude, candidates=candidates
                    ),
                )
            )
        elif served is not None and known:
            fresh = (
                precomputed_usable
                and artifact is not None
                and items.precomputed_version == artifact.version
            )

            def collaborative(depth: int) -> list[Scored]:
                # Filtered lazily: the first `depth` allowed ones are all it needs.
                stored = list(
                    islice(
                        (
                            Scored(sku, score)
                            for sku, score in (items.precomputed if fresh else ())
                            if sku not in exclude
                            and _allowed(resources.catalogue, candidates.allowed, sku)
                        ),
                        depth,
                    )
                )
                # A list shorter than the precompute depth held every item the model
                # ranks for the customer (a small catalogue): computing gives no more.
                exhaustive = len(items.precomputed) < PRECOMPUTE_DEPTH
                if fresh and (len(stored) == depth or exhaustive):
                    return stored
                assert served is not None
                return served.recommend(
                    request.customer_key, depth, exclude=exclude, candidates=candidates
                )

            chain.append(("als", collaborative))
        elif served is not None and items.history is None and items.recent:
            # No history was read (a caller without one): the recent interactions only.
            chain.append(
                ("session", lambda depth: _session_list(served, items, depth, exclude, candidates))
            )
        interests = [c for c in (request.category, request.favorite_category) if c]
        content = resources.content
        if content is not None and (interests or request.tags):
            chain.append(
                (
                    "content",
                    lambda depth: content.for_interests(
                        interests, list(request.tags), depth, exclude=exclude, candidates=candidates
                    ),
                )
            )
        return chain + _bestsellers(resources, request.segment, exclude, candidates)

    @traced(RECOMMEND_SPAN, {"personalize.recommend.kind": "similar"}, result=_answered)
    async def similar(
        self,
        product_text: str,
        request: RecommendationRequest,
        items: CustomerItems | None = None,
    ) -> Recommendation:
        """Products for "something like X", X being the catalogue product ``product_text``
        names (its sku, its title, else the closest product text).

        With the ``bought_together`` strategy, the products most often bought with X
        (pair score: lift, shrunk for rare pairs) lead, products like X by content top
        them up, then the segment's and the overall bestsellers. With any other strategy,
        products like X by content only. The request's filters hold for all of them (see
        the module docstring), X's category counting as asked: a dislike of it gives way.
        Things like X are of X's kind, so the category cap and the demotion of substitutes
        of recent purchases apply only when products bought with X were found.

        Raises:
            NotFoundError: no product matches ``product_text``, or nothing can answer (no
                content model, and the strategy is not ``bought_together``).
        """
        resources = await self.resources()
        associations = await self.associations.get_async()
        together = (
            associations.model
            if associations is not None and request.strategy == "bought_together"
            else None
        )
        content = resources.content
        if content is None and together is None:
            raise NotFoundError(
                "no content model yet (run `personalize train`)"
                if resources.products
                else "the catalogue is empty"
            )
        anchor = resources.products[_resolve_product(resources, product_text)]
        request, disliked = without_dislikes(
            replace(request, category=anchor.category), resources.categories
        )
        items = items or CustomerItems(purchased=frozenset(), recent=())
        now = request.now or datetime.now(timezone.utc)
        exclude = set(request.shown) | {anchor.sku}
        if request.exclude_purchased:
            exclude |= items.purchased - repeatable(
                items.purchases, now, resources.products, self.policy
            )
        candidates = RecommendationFilters(
            n=request.n, exclude=frozenset(exclude), exclude_categories=disliked
        ).candidates(resources.catalogue)
        strategies: list[tuple[str, Callable[[int], list[Scored]]]] = []
        if together is not None:
            strategies.append(
                (
                    "bought_together",
                    lambda depth: together.recommend(
                        [anchor.sku], depth, exclude=exclude, candidates=candidates
                    ),
                )
            )
        if content is not None:
            strategies.append(
                (
                    "content",
                    lambda depth: content.similar_to(
                        anchor.sku, depth, exclude=exclude, candidates=candidates
                    ),
                )
            )
        if together is not None:
            strategies += _bestsellers(resources, request.segment, exclude, candidates)
        depth = pool_depth(request.n)
        ranked, merged = _pool(strategies, depth)
        bundle = any(name == "bought_together" for name, _ in ranked)
        arranged = arrange(
            [s.item_id for s in merged],
            request.n,
            resources.products,
            ArrangeRequest(
                strategy=request.strategy,
                avoid=substitute_keys(
                    items.purchases, now, resources.products, self.policy, resources.types
                )
                if bundle
                else frozenset(),
                max_per_category=self.policy.max_per_category if bundle else None,
                max_price=request.max_price,
            ),
            depth=depth,
            types=resources.types,
            arrivals=associations.arrivals if associations is not None else None,
        )
        products = [resources.products[sku] for sku in arranged]
        source = _lead_source(ranked, products)
        if products:
            count_recommendation(source)
        reason = like_reason(source, anchor.title) or fallback_reason(
            source,
            products[0] if products else None,
            ReasonContext(None, request.favorite_category, request.tags),
        )
        return Recommendation(products=tuple(products), source=source, reason=reason)


def _pool(
    strategies: Sequence[tuple[str, Callable[[int], list[Scored]]]], depth: int
) -> tuple[list[tuple[str, list[Scored]]], list[Scored]]:
    """Each strategy's list (source, scored) that found any, and the merged pool of at
    most ``depth`` products, best first.

    Later strategies only run while the pool is short: a known customer costs one
    matrix-vector product, not five models.
    """
    ranked: list[tuple[str, list[Scored]]] = []
    merged: list[Scored] = []
    for source, strategy in strategies:
        scored = strategy(depth)
        if scored:
            ranked.append((source, scored))
            merged = merge_unique([s for _, s in ranked], depth)
        if len(merged) >= depth:
            break
    return ranked, merged


def _lead_source(
    ranked: Sequence[tuple[str, list[Scored]]], products: Sequence[ProductRecord]
) -> str:
    """The strategy that found the product the list leads with (``popular`` if none)."""
    if not products:
        return "popular"
    lead = products[0].sku
    return next(
        (name for name, scored in ranked if any(s.item_id == lead for s in scored)), "popular"
    )


def _bestsellers(
    resources: Resources, segment: str, exclude: set[str], candidates: CandidateSet
) -> list[tuple[str, Callable[[int], list[Scored]]]]:
    """The end of every chain: the segment's bestsellers (when it has any), then the
    overall ones."""
    popularity = resources.popularity
    if popularity is None:
        return []
    chain: list[tuple[str, Callable[[int], list[Scored]]]] = []
    if popularity.has_segment(segment):
        chain.append(
            (
                "segment_popular",
                lambda depth: popularity.recommend(
                    depth, segment=segment, exclude=exclude, candidates=candidates
                ),
            )
        )
    chain.append(
        (
            "popular",
            lambda depth: popularity.recommend(depth, exclude=exclude, candidates=candidates),
        )
    )
    return chain


def _allowed(catalogue: ItemCatalogue, allowed: NDArray[np.bool_], sku: str) -> bool:
    row = catalogue.index.get(sku)
    return row is not None and bool(allowed[row])


def _session_list(
    served: ServedModel,
    items: CustomerItems,
    depth: int,
    exclude: set[str],
    candidates: CandidateSet,
) -> list[Scored]:
    skus = [sku for sku, _, _ in items.recent]
    kinds = [kind for _, kind, _ in items.recent]
    values = [np.nan if value is None else value for _, _, value in items.recent]
    model = served.als
    try:
        weights = store_confidence().weights_for(kinds, values)
        keep = weights > 0
        liked = [sku for sku, ok in zip(skus, keep, strict=True) if ok]
        vector = model.user_vector_from_items(liked, weights[keep])
    except (InvalidInputError, NotFoundError):
        return []  # none of the recent items is in the model
    rows = [row for row in map(model.item_ids_.get, liked) if row is not None]
    return served.recommend_for_vector(
        vector, depth, item_rows=rows, exclude=exclude, candidates=candidates
    )


def _newest_purchases(items: CustomerItems, limit: int) -> list[str]:
    """The customer's newest purchased skus, each once, newest first."""
    newest: list[str] = []
    for sku, _ in items.purchases:
        if sku not in newest:
            newest.append(sku)
            if len(newest) == limit:
                break
    return newest


def _resolve_product(resources: Resources, text: str) -> str:
    """The sku ``text`` names: a sku, a title (any case), else the product whose text is
    closest (with a content model).

    Raises:
        NotFoundError: nothing matches.
    """
    cleaned = text.strip()
    if cleaned.upper() in resources.products:
        return cleaned.upper()
    titled = resources.titles.get(cleaned.lower())
    if titled is not None:
        return titled
    best = resources.content.for_text(cleaned, 1) if resources.content is not None else []
    if not best:
        raise NotFoundError("no product matches that description")
    return best[0].item_id


def without_dislikes(
    request: RecommendationRequest, categories: frozenset[str]
) -> tuple[RecommendationRequest, frozenset[str]]:
    """The categories the shopper turned down (``not_interested_in_<category>`` tags),
    except the one this request asks for, and the request without them as interests.

    Every strategy's candidates leave those categories out (one filter for all). The
    dislike tags, likes of a disliked category and a disliked favourite category are no
    interests for content to match, nor reasons to name.
    """
    disliked = disliked_categories(request.tags, categories, asked=request.category)
    tags = interest_tags(request.tags, disliked)
    favorite = None if request.favorite_category in disliked else request.favorite_category
    if tags == request.tags and favorite == request.favorite_category:
        return request, disliked
    return replace(request, tags=tags, favorite_category=favorite), disliked


def resolve_category(asked: str | None, categories: frozenset[str]) -> str | None:
    """The catalogue category a customer's words mean, or None if none fits.

    "running shoes" means running (a category named in the words), "electronic" means
    electronics (a close spelling); words that name no category do not narrow the list.
    """
    if not asked:
        return None
    words = asked.strip().lower()
    if words in categories:
        return words
    for category in sorted(categories):
        if category in words.split() or category in words:
            return category
    close = difflib.get_close_matches(words, sorted(categories), n=1, cutoff=0.8)
    return close[0] if close else None


def describe(recommendation: Recommendation, category: str | None = None) -> str:
    """The ready-to-say sentence for ``recommendation_text``."""
    category = recommendation.category or category
    if not recommendation.products:
        where = f" in {category}" if category else ""
        return f"I couldn't find anything in stock{where} that fits right now."
    listed = ", ".join(f"{p.title} ({p.price:.2f})" for p in recommendation.products)
    where = f" in {category}" if category else ""
    return f"Here are my picks{where}: {listed}."
