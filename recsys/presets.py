"""Named column mappings for the log layouts this project knows (see ../shared/datasets/README.md).

A preset is only a ``ColumnMapping``; a user with another layout writes their own mapping in the
config instead. ``valid_from``/``valid_until`` state the date range a log documents for itself: rows
outside it are quarantined with that reason, so stray timestamps never stretch the training window.
"""

from __future__ import annotations

import datetime as dt

from recsys.mapping import ColumnMapping, ItemsMapping

CHINA = dt.timezone(dt.timedelta(hours=8))

PRESETS: dict[str, ColumnMapping] = {
    # The embedded sample written by recsys.sample.
    "sample": ColumnMapping(
        format="csv",
        user_id="user_id",
        item_id="item_id",
        event_time="timestamp",
        time_format="iso",
        event_type="event_type",
    ),
    # Alibaba Taobao UserBehavior: user_id,item_id,category_id,behavior_type,timestamp (unix seconds).
    # The dataset documents 2017-11-25 .. 2017-12-03 in China time (UTC+8), i.e. from 2017-11-24 16:00 UTC;
    # a few stray rows (2017-09, 2017-11-20..23) fall outside and are quarantined with that reason.
    "taobao": ColumnMapping(
        format="csv",
        user_id="user_id",
        item_id="item_id",
        event_time="timestamp",
        time_format="unix_s",
        event_type="behavior_type",
        event_type_values={"pv": "view", "fav": "favorite", "cart": "cart", "buy": "purchase"},
        category="category_id",
        valid_from=dt.datetime(2017, 11, 25, tzinfo=CHINA),
        valid_until=dt.datetime(2017, 12, 4, tzinfo=CHINA),
    ),
    # CIKM Cup 2016 (Diginetica) item views: session_id;user_id;item_id;timeframe;eventdate.
    # timeframe is milliseconds since the session started; user_id is mostly NA, so the session stands in.
    "diginetica": ColumnMapping(
        format="csv",
        delimiter=";",
        user_id="session_id",
        item_id="item_id",
        event_time="eventdate",
        time_format="date_plus_offset_ms",
        time_offset_column="timeframe",
        event_type=None,
        session_id="session_id",
    ),
    # REES46 multi-category store: event_time like "2019-10-01 00:00:00 UTC", user_session ids.
    "rees46": ColumnMapping(
        format="csv",
        user_id="user_id",
        item_id="product_id",
        event_time="event_time",
        time_format="iso",
        event_type="event_type",
        event_type_values={"view": "view", "cart": "cart", "purchase": "purchase", "remove_from_cart": "cart"},
        session_id="user_session",
        category="category_code",
        brand="brand",
        price="price",
    ),
    # MovieLens 100K in RecBole's atomic format (ml-100k.inter): tab-separated, header
    # user_id:token  item_id:token  rating:float  timestamp:float (unix seconds). Explicit ratings become
    # implicit events whose type carries the rating's weight (graph.event_weights: view 1, favorite 2,
    # cart 3, purchase 5): 1-2 stars a view, 3 a favorite, 4 a cart, 5 a purchase. With the default
    # interactions.weighting (binary) every rating is one interaction, as in the NCF paper.
    "ml100k": ColumnMapping(
        format="csv",
        delimiter="\t",
        user_id="user_id:token",
        item_id="item_id:token",
        event_time="timestamp:float",
        time_format="unix_s",
        event_type="rating:float",
        event_type_values={"1": "view", "2": "view", "3": "favorite", "4": "cart", "5": "purchase"},
    ),
}

# Items files whose layout differs from item_id,category,brand,price, by the preset of their log.
ITEMS_PRESETS: dict[str, ItemsMapping] = {
    # Diginetica's product-categories.csv: itemId;categoryId
    "diginetica": ItemsMapping(delimiter=";", item_id="itemId", category="categoryId", brand=None, price=None),
}
