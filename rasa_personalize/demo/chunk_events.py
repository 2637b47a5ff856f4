"""Events of the chunked demo shop: one chunk of customers' histories, vectorised.

Part of :mod:`rasa_personalize.demo.chunked`. :class:`ChunkDrawer` turns the plans of a
range of customers into their events (purchases with complements and prices, funnels,
the closing session, browsing, the last week's purchases), channels and devices, and
their demographics, in the small shop's order of steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from rasa_personalize.demo.chunk_plans import (
    BROWSE_KINDS,
    Draw,
    GroupTable,
    Plans,
    Shopping,
    cumulative,
    rank_within,
    spread,
)
from rasa_personalize.demo.draws import Draws, pick, pick_rows
from rasa_personalize.demo.generator import (
    _BEFORE_WEEK_S,
    _CART,
    _CARTED_PURCHASE_SHARE,
    _CHANNEL_SHARES,
    _CHANNELS,
    _CHAT_CLICK,
    _COMPLEMENT_LAG_S,
    _COMPLEMENT_RATE,
    _COUNTRIES,
    _DAY,
    _DEVICE_SHARES,
    _DEVICES,
    _DISCOUNT_RANGE,
    _FEEDBACK,
    _FEEDBACK_ON_PURCHASE,
    _FUNNEL_LEAD_S,
    _GENDER_SHARES,
    _HOUR,
    _KIND_CODE,
    _LAPSED_QUIET_S,
    _MINUTE,
    _PREFERRED_SHARE,
    _PURCHASE,
    _RECENT_PURCHASE_S,
    _RECENT_SESSION_S,
    _SEARCH,
    _SEARCH_WITH_PRODUCT,
    _TAG_MIN_VIEWS,
    _TAG_WINDOW_S,
    _VIEW,
    PURCHASE_WEEK_S,
    _Catalogue,
    _Events,
    probability_from_history,
)


@dataclass(frozen=True, eq=False)
class Chunk:
    """One chunk's customers and events (customer indices local to the chunk)."""

    start: int
    events: _Events  # chronological per customer: customer ascending, then oldest first
    position: NDArray[np.int64]  # per event, its place in its customer's history
    channel: NDArray[np.int64]
    device: NDArray[np.int64]
    signed_up: NDArray[np.int64]  # per customer, seconds before now
    age: NDArray[np.int64]
    gender: NDArray[np.int64]
    country: NDArray[np.int64]
    city: NDArray[np.int64]
    probability: NDArray[np.float64]
    spend: NDArray[np.float64]
    interest: tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]


class ChunkDrawer:
    """Draws the events and attributes of a range of customers (see :class:`Chunk`)."""

    def __init__(
        self,
        draws: Draws,
        plans: Plans,
        table: GroupTable,
        catalogue: _Catalogue,
        window_s: int,
    ) -> None:
        self.draws = draws
        self.plans = plans
        self.table = table
        self.catalogue = catalogue
        self.shopping = Shopping.build(catalogue, table.biases)
        self.window_s = window_s
        self.channel_cdf = cumulative(np.array(_CHANNEL_SHARES))
        self.device_cdf = cumulative(np.array(_DEVICE_SHARES))
        self.gender_cdf = cumulative(np.array(_GENDER_SHARES))
        self.country_cdf = cumulative(np.array([share for share, _ in _COUNTRIES.values()]))
        self.city_counts = np.array([len(cities) for _, cities in _COUNTRIES.values()])
        self.browse_kinds = np.array([_KIND_CODE[kind] for kind in BROWSE_KINDS], dtype=np.int64)

    def _category(
        self, local: NDArray[np.int64], start: int, uniform: NDArray[np.float64]
    ) -> NDArray[np.int64]:
        """A category by the customer's attention: a preferred one with probability
        ``_PREFERRED_SHARE`` (split 60/30/10), else one by the catalogue's weights."""
        count = self.plans.preferred_count[start + local].astype(np.int64)
        preferred = self.plans.preferred[start + local].astype(np.int64)
        to_preferred = (uniform < _PREFERRED_SHARE) & (count > 0)
        slot = pick_rows(
            self.shopping.split_cdf[count], np.minimum(uniform / _PREFERRED_SHARE, 1.0)
        )
        rest = np.where(count > 0, (uniform - _PREFERRED_SHARE) / (1 - _PREFERRED_SHARE), uniform)
        other = pick(self.shopping.category_cdf, np.clip(rest, 0.0, 1.0))
        chosen = np.take_along_axis(preferred, np.minimum(slot, 2)[:, None], axis=1)[:, 0]
        return np.where(to_preferred, chosen, other)

    def draw(self, start: int, stop: int) -> Chunk:  # noqa: PLR0915  # one pass, in the small shop's order
        d, plans, table, shop = self.draws, self.plans, self.table, self.shopping
        n = stop - start
        customers = np.arange(start, stop, dtype=np.int64)
        group = plans.group[start:stop].astype(np.int64)
        bias = table.bias[group]
        lapsed = table.lapsed[group]
        joined = (self.window_s * (0.35 + 0.65 * d.uniform(Draw.JOINED, customers))).astype(
            np.int64
        )
        newest = np.where(lapsed, _LAPSED_QUIET_S, _MINUTE).astype(np.int64)
        oldest = np.where(lapsed, self.window_s, joined).astype(np.int64)

        # Purchases, their complements and prices.
        purchases = plans.purchases[start:stop].astype(np.int64)
        p_owner, p_index = spread(purchases)
        p_who = customers[p_owner]
        category = self._category(p_owner, start, d.uniform(Draw.PURCHASE_CATEGORY, p_who, p_index))
        bought = shop.products.draw(
            bias[p_owner], category, d.uniform(Draw.PURCHASE_PRODUCT, p_who, p_index)
        )
        latest = oldest[p_owner] - _FUNNEL_LEAD_S
        bought_age = d.integers(
            Draw.PURCHASE_AGE, p_who, p_index, np.maximum(newest, _HOUR)[p_owner], latest
        )
        # Active means a recent purchase, whatever the other draws said.
        recent = (p_index == 0) & ~lapsed[p_owner]
        bought_age[recent] = d.integers(
            Draw.RECENT_PURCHASE,
            p_who[recent],
            0,
            _HOUR,
            np.minimum(_RECENT_PURCHASE_S, latest[recent]),
        )
        # The last week holds only the purchases drawn for it.
        bought_age = np.where(
            bought_age <= PURCHASE_WEEK_S, bought_age + PURCHASE_WEEK_S, bought_age
        )
        self._pair_complements(
            p_owner,
            p_index,
            p_who,
            bought=bought,
            bought_age=bought_age,
            bias=bias,
            earliest=np.maximum(newest, _BEFORE_WEEK_S),
        )
        discount_rank = rank_within(p_owner, d.uniform(Draw.DISCOUNT, p_who, p_index))
        discounted = discount_rank < plans.discounted[start:stop].astype(np.int64)[p_owner]
        list_price = self.catalogue.prices[bought]
        low, high = _DISCOUNT_RANGE
        paid = np.where(
            discounted,
            np.round(
                list_price * (low + (high - low) * d.uniform(Draw.DISCOUNT_PRICE, p_who, p_index)),
                2,
            ),
            list_price,
        )
        quantity = np.where(d.uniform(Draw.QUANTITY, p_who, p_index) < 0.2, 2, 1).astype(np.int64)
        parts = [_events(p_owner, bought_age, _PURCHASE, bought, price=paid, quantity=quantity)]

        # The funnel: a view before the purchase, and a cart event between the two.
        view = d.uniform(Draw.FUNNEL_VIEW, p_who, p_index) < plans.funnel_share
        cart = view & (d.uniform(Draw.FUNNEL_CART, p_who, p_index) < _CARTED_PURCHASE_SHARE)
        view_age = bought_age + d.integers(Draw.VIEW_LEAD, p_who, p_index, 5 * _MINUTE, 2 * _DAY)
        parts.append(_events(p_owner[view], view_age[view], _VIEW, bought[view]))
        cart_age = bought_age + (
            (view_age - bought_age) * (0.1 + 0.8 * d.uniform(Draw.CART_AT, p_who, p_index))
        ).astype(np.int64)
        parts.append(_events(p_owner[cart], cart_age[cart], _CART, bought[cart]))

        # The closing session in the favourite category.
        r_owner, r_index = spread(plans.recent_views[start:stop].astype(np.int64))
        r_who = customers[r_owner]
        favourite = np.maximum(plans.preferred[start + r_owner, 0].astype(np.int64), 0)
        seen = shop.products.draw(
            bias[r_owner], favourite, d.uniform(Draw.RECENT_PRODUCT, r_who, r_index)
        )
        seen_age = d.integers(Draw.RECENT_AGE, r_who, r_index, 10 * _MINUTE, _RECENT_SESSION_S - 1)
        parts.append(_events(r_owner, seen_age, _VIEW, seen))

        parts.append(
            self._browsing(
                start,
                customers,
                group,
                bias=bias,
                window=(newest, oldest),
                purchases=purchases,
                bought=bought,
                bought_age=bought_age,
            )
        )
        base = _chronological(_Events.concat(parts))
        position = _positions(base.customer, n)
        channel, device = self._channels_and_devices(base, position, customers)

        # Who they are; the signing up precedes the first event.
        first = np.full(n, -1, dtype=np.int64)
        np.maximum.at(first, base.customer, base.age)
        tenure = table.tenure_s[group] * d.exponential(Draw.SIGNED_UP_BEFORE, customers)
        signed_up = np.where(
            first < 0,
            d.integers(Draw.SIGNED_UP_NEW, customers, 0, _HOUR, 13 * _DAY - 1),
            first + _HOUR + tenure.astype(np.int64),
        )
        years = np.clip(np.rint(40.0 + 14.0 * d.normal(Draw.AGE, customers)), 18, 80).astype(
            np.int64
        )
        country = pick(self.country_cdf, d.uniform(Draw.COUNTRY, customers))
        city = np.minimum(
            (d.uniform(Draw.CITY, customers) * self.city_counts[country]).astype(np.int64),
            self.city_counts[country] - 1,
        )
        probability = probability_from_history(
            plans.tier[start:stop].astype(np.float64), table.quiet[group], base, device
        )
        events, channel, device = self._purchase_week(
            start, customers, (base, channel, device), probability, bias
        )
        position = _positions(events.customer, n)
        purchase = events.kind == _PURCHASE
        spend = np.bincount(
            events.customer[purchase],
            weights=events.price[purchase] * events.quantity[purchase],
            minlength=n,
        ).astype(np.float64)
        return Chunk(
            start=start,
            events=events,
            position=position,
            channel=channel,
            device=device,
            signed_up=signed_up,
            age=years,
            gender=pick(self.gender_cdf, d.uniform(Draw.GENDER, customers)),
            country=country,
            city=city,
            probability=probability,
            spend=spend,
            interest=self._interest(events, n),
        )

    def _pair_complements(
        self,
        owner: NDArray[np.int64],
        index: NDArray[np.int64],
        who: NDArray[np.int64],
        *,
        bought: NDArray[np.int64],
        bought_age: NDArray[np.int64],
        bias: NDArray[np.int64],
        earliest: NDArray[np.int64],
    ) -> None:
        """Pair each customer's purchases at random; in a pair whose first product has
        complements, the second becomes one of them (with ``_COMPLEMENT_RATE``), bought
        within two days before. In place. The first purchase is never the replaced one."""
        if not len(owner):
            return
        rank = rank_within(owner, self.draws.uniform(Draw.PAIR_ORDER, who, index))
        order = np.lexsort((rank, owner))
        counts = np.bincount(owner)
        ranked = rank[order]
        leads = np.flatnonzero((ranked % 2 == 0) & (ranked + 1 < counts[owner[order]]))
        anchor, slot = order[leads], order[leads + 1]
        swap = index[slot] == 0
        anchor, slot = np.where(swap, slot, anchor), np.where(swap, anchor, slot)
        kind = self.shopping.complement_of[bought[anchor]]
        chance = self.draws.uniform(Draw.COMPLEMENT, who[anchor], index[anchor])
        paired = (kind >= 0) & (chance < _COMPLEMENT_RATE)
        anchor, slot, kind = anchor[paired], slot[paired], kind[paired]
        bought[slot] = self.shopping.complements.draw(
            bias[owner[anchor]],
            kind,
            self.draws.uniform(Draw.COMPLEMENT_PRODUCT, who[anchor], index[anchor]),
        )
        lag = self.draws.integers(
            Draw.COMPLEMENT_LAG, who[anchor], index[anchor], 0, _COMPLEMENT_LAG_S
        )
        bought_age[slot] = np.maximum(bought_age[anchor] - lag, earliest[owner[anchor]])

    def _browsing(
        self,
        start: int,
        customers: NDArray[np.int64],
        group: NDArray[np.int64],
        *,
        bias: NDArray[np.int64],
        window: tuple[NDArray[np.int64], NDArray[np.int64]],
        purchases: NDArray[np.int64],
        bought: NDArray[np.int64],
        bought_age: NDArray[np.int64],
    ) -> _Events:
        d = self.draws
        newest, oldest = window
        owner, index = spread(self.plans.browsing[start : start + len(customers)])
        who = customers[owner]
        mine = group[owner]
        kind = self.browse_kinds[
            pick_rows(self.table.kind_cdf[mine], d.uniform(Draw.BROWSE_KIND, who, index))
        ]
        age = d.integers(Draw.BROWSE_AGE, who, index, newest[owner], oldest[owner])
        category = self._category(owner, start, d.uniform(Draw.BROWSE_CATEGORY, who, index))
        product = self.shopping.products.draw(
            bias[owner], category, d.uniform(Draw.BROWSE_PRODUCT, who, index)
        )
        # A search often ends on a product page, but not always.
        blind = (kind == _SEARCH) & (
            d.uniform(Draw.BLIND_SEARCH, who, index) >= _SEARCH_WITH_PRODUCT
        )
        product[blind] = -1
        value = np.full(len(owner), np.nan)
        feedback = kind == _FEEDBACK
        positive = d.uniform(Draw.FEEDBACK_VALUE, who, index) < self.table.positive_feedback[mine]
        value[feedback] = np.where(positive[feedback], 1.0, -1.0)
        # Most feedback rates something bought, a day or two weeks after buying it.
        on_purchase = np.flatnonzero(
            feedback
            & (purchases[owner] > 0)
            & (d.uniform(Draw.FEEDBACK_ON_PURCHASE, who, index) < _FEEDBACK_ON_PURCHASE)
        )
        if len(on_purchase):
            holder = owner[on_purchase]
            first_purchase = np.cumsum(purchases) - purchases
            which = first_purchase[holder] + np.minimum(
                (
                    d.uniform(Draw.FEEDBACK_WHICH, who[on_purchase], index[on_purchase])
                    * purchases[holder]
                ).astype(np.int64),
                purchases[holder] - 1,
            )
            product[on_purchase] = bought[which]
            lag = d.integers(
                Draw.FEEDBACK_LAG, who[on_purchase], index[on_purchase], _DAY, 14 * _DAY - 1
            )
            age[on_purchase] = np.maximum(bought_age[which] - lag, newest[holder])
        return _events(owner, age, kind, product, value=value)

    def _channels_and_devices(
        self, events: _Events, position: NDArray[np.int64], customers: NDArray[np.int64]
    ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        d = self.draws
        who = customers[events.customer]
        channel = pick(self.channel_cdf, d.uniform(Draw.CHANNEL, who, position))
        channel[events.kind == _CHAT_CLICK] = _CHANNELS.index("chat")
        # Each customer mostly uses one device.
        primary = pick(self.device_cdf, d.uniform(Draw.PRIMARY_DEVICE, customers))
        other = pick(self.device_cdf, d.uniform(Draw.OTHER_DEVICE, who, position))
        device = np.where(
            d.uniform(Draw.DEVICE_SWITCH, who, position) < 0.8, primary[events.customer], other
        )
        device[(channel == _CHANNELS.index("app")) & (device == _DEVICES.index("desktop"))] = (
            _DEVICES.index("mobile")
        )
        return channel, device

    def _purchase_week(
        self,
        start: int,
        customers: NDArray[np.int64],
        base: tuple[_Events, NDArray[np.int64], NDArray[np.int64]],
        probability: NDArray[np.float64],
        bias: NDArray[np.int64],
    ) -> tuple[_Events, NDArray[np.int64], NDArray[np.int64]]:
        """The events with the last week's purchases added: each customer buys one
        product there with their probability, after viewing it earlier in the week."""
        d = self.draws
        events, channel, device = base
        buyers = np.flatnonzero(d.uniform(Draw.WEEK_BUY, customers) < probability)
        who = customers[buyers]
        category = self._category(buyers, start, d.uniform(Draw.WEEK_CATEGORY, who))
        product = self.shopping.products.draw(
            bias[buyers], category, d.uniform(Draw.WEEK_PRODUCT, who)
        )
        bought_at = d.integers(Draw.WEEK_AT, who, 0, _HOUR, PURCHASE_WEEK_S - 10 * _MINUTE - 1)
        viewed_at = bought_at + d.integers(
            Draw.WEEK_VIEW, who, 0, 5 * _MINUTE, PURCHASE_WEEK_S - bought_at - 1
        )
        purchases = self.plans.purchases[start + buyers].astype(np.int64)
        # Bargain hunters keep their share of discounted purchases.
        bargain = (purchases > 0) & (
            self.plans.discounted[start + buyers] >= 0.5 * np.maximum(purchases, 1)
        )
        list_price = self.catalogue.prices[product]
        low, high = _DISCOUNT_RANGE
        paid = np.where(
            bargain,
            np.round(list_price * (low + (high - low) * d.uniform(Draw.WEEK_PRICE, who)), 2),
            list_price,
        )
        added = _Events.concat(
            [
                _events(buyers, bought_at, _PURCHASE, product, price=paid),
                _events(buyers, viewed_at, _VIEW, product),
            ]
        )
        twice = np.concatenate([who, who])
        added_channel = pick(
            self.channel_cdf,
            d.uniform(Draw.WEEK_CHANNEL, twice, np.repeat([0, 1], len(who))),
        )
        # The week's events come from the device the customer used last (their newest
        # event is the last of their run: the events are chronological per customer).
        counts = np.bincount(events.customer, minlength=len(customers))
        last = np.cumsum(counts) - 1
        last_device = device[np.maximum(last, 0)]
        merged = _Events.concat([events, added])
        order = _chronological_order(merged)
        return (
            merged.take(order),
            np.concatenate([channel, added_channel])[order],
            np.concatenate([device, last_device[added.customer]])[order],
        )

    def _interest(
        self, events: _Events, customers: int
    ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
        """(customer, category, weight) of the interest tags: >= 3 views in 30 days."""
        n_categories = len(self.catalogue.categories)
        recent = (events.kind == _VIEW) & (events.age <= _TAG_WINDOW_S) & (events.product >= 0)
        cell = (
            events.customer[recent] * n_categories
            + self.catalogue.category_of[events.product[recent]]
        )
        views = np.bincount(cell, minlength=customers * n_categories).reshape(
            customers, n_categories
        )
        customer, category = np.nonzero(views >= _TAG_MIN_VIEWS)
        weight = np.minimum(1.0, views[customer, category] / 10)
        return customer.astype(np.int64), category.astype(np.int64), weight


def _events(
    owner: NDArray[np.int64],
    age: NDArray[np.int64],
    kind: int | NDArray[np.int64],
    product: NDArray[np.int64],
    *,
    price: NDArray[np.float64] | None = None,
    quantity: NDArray[np.int64] | None = None,
    value: NDArray[np.float64] | None = None,
) -> _Events:
    size = len(age)
    return _Events(
        customer=owner.astype(np.int64),
        age=age.astype(np.int64),
        kind=np.broadcast_to(np.asarray(kind, dtype=np.int64), (size,)).copy(),
        product=product.astype(np.int64),
        price=price if price is not None else np.full(size, np.nan),
        quantity=quantity if quantity is not None else np.ones(size, dtype=np.int64),
        value=value if value is not None else np.full(size, np.nan),
    )


def _chronological_order(events: _Events) -> NDArray[np.int64]:
    """Per customer, oldest first; ties keep generation order (the same in any chunk)."""
    return np.lexsort((np.arange(len(events.age)), -events.age, events.customer)).astype(np.int64)


def _chronological(events: _Events) -> _Events:
    return events.take(_chronological_order(events))


def _positions(customer: NDArray[np.int64], customers: int) -> NDArray[np.int64]:
    """Each event's place in its customer's run (events grouped by customer)."""
    counts = np.bincount(customer, minlength=customers)
    starts = np.cumsum(counts) - counts
    return np.arange(len(customer), dtype=np.int64) - starts[customer]
