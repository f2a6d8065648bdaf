"""Named column mappings for the log layouts this project knows (see ../shared/datasets/README.md).

A preset is only a ``ColumnMapping``; a user with another layout writes their own mapping in the
config instead. ``valid_from``/``valid_until`` state the date range a log documents for itself: rows
outside it are quarantined with that reason, so stray timestamps never stretch the training window.
Each comment gives the file's exact layout (header or, for headerless files, its first line). Logs
older than ``ingest.max_late_days`` (365) before their newest event (MovieLens spans years) need that
raised, or their older rows are quarantined as too old.
"""

from __future__ import annotations

import datetime as dt

from recsys.mapping import ColumnMapping, ItemsMapping

CHINA = dt.timezone(dt.timedelta(hours=8))

# MovieLens stars -> event types whose graph.event_weights carry the rating's weight (view 1, favorite 2,
# cart 3, purchase 5): 1-2 stars a view, 3 a favorite, 4 a cart, 5 a purchase.
ML_STARS = {"1": "view", "2": "view", "3": "favorite", "4": "cart", "5": "purchase"}
ML_HALF_STARS = {"0.5": "view", "1.0": "view", "1.5": "view", "2.0": "view", "2.5": "view",
                 "3.0": "favorite", "3.5": "favorite", "4.0": "cart", "4.5": "cart", "5.0": "purchase"}

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
        event_type_values=ML_STARS,
    ),
    # CIKM Cup 2016 (Diginetica) purchases, train-purchases.csv, header
    # sessionId;userId;timeframe;eventdate;ordernumber;itemId (ordernumber is the order, not needed).
    # Every row is a purchase; timeframe and the session standing in for the user as in "diginetica".
    "diginetica_purchases": ColumnMapping(
        format="csv",
        delimiter=";",
        user_id="sessionId",
        item_id="itemId",
        event_time="eventdate",
        time_format="date_plus_offset_ms",
        time_offset_column="timeframe",
        event_type=None,
        fixed_event_type="purchase",
        session_id="sessionId",
    ),
    # YooChoose / RecSys Challenge 2015 clicks, yoochoose-clicks.dat: no header, first line
    # 1,2014-04-07T10:51:09.277Z,214536502,0 (SessionID,Timestamp,ItemID,Category). Sessions are
    # anonymous: the session stands in for the user. Category is left out: it mixes "0" (unknown), "S"
    # (special offer), 1..12 and brand ids, so it is no category.
    "yoochoose_clicks": ColumnMapping(
        format="csv",
        header=False,
        columns=("SessionId", "Timestamp", "ItemId", "Category"),
        user_id="SessionId",
        item_id="ItemId",
        event_time="Timestamp",
        time_format="iso",
        event_type=None,
        session_id="SessionId",
    ),
    # YooChoose / RecSys Challenge 2015 buys, yoochoose-buys.dat: no header, first line
    # 420374,2014-04-06T18:44:58.314Z,214537888,12462,1 (SessionID,Timestamp,ItemID,Price,Quantity).
    # Every row is a purchase; the price goes to the items' side information (0 where unknown).
    "yoochoose_buys": ColumnMapping(
        format="csv",
        header=False,
        columns=("SessionId", "Timestamp", "ItemId", "Price", "Quantity"),
        user_id="SessionId",
        item_id="ItemId",
        event_time="Timestamp",
        time_format="iso",
        event_type=None,
        fixed_event_type="purchase",
        session_id="SessionId",
        price="Price",
    ),
    # The tab-separated session form of GRU4Rec and the session-recommendation benchmarks (YooChoose,
    # Diginetica, ... after their preprocessing; ../shared/datasets/yoochoose), header
    # SessionId<TAB>ItemId<TAB>Time, Time in unix seconds with decimals (1396437466.94). Clicks only.
    "gru4rec": ColumnMapping(
        format="csv",
        delimiter="\t",
        user_id="SessionId",
        item_id="ItemId",
        event_time="Time",
        time_format="unix_s",
        event_type=None,
        session_id="SessionId",
    ),
    # RetailRocket events.csv, header timestamp,visitorid,event,itemid,transactionid; unix milliseconds;
    # event view / addtocart / transaction (transactionid only on transactions, not needed).
    # No session column: sessions are cut at the inactivity gap.
    "retailrocket": ColumnMapping(
        format="csv",
        user_id="visitorid",
        item_id="itemid",
        event_time="timestamp",
        time_format="unix_ms",
        event_type="event",
        event_type_values={"view": "view", "addtocart": "cart", "transaction": "purchase"},
    ),
    # MovieLens 1M/10M ratings.dat: no header, '::'-separated UserID::MovieID::Rating::Timestamp, first
    # line 1::1193::5::978300760 (unix seconds). The two-character separator is split on literally
    # (the files have no quoting). Ratings become typed events as in "ml100k".
    "movielens_dat": ColumnMapping(
        format="csv",
        delimiter="::",
        header=False,
        columns=("UserID", "MovieID", "Rating", "Timestamp"),
        user_id="UserID",
        item_id="MovieID",
        event_time="Timestamp",
        time_format="unix_s",
        event_type="Rating",
        event_type_values=ML_STARS,
    ),
    # MovieLens ratings.csv (ml-latest, ml-latest-small, ml-20m, ml-25m), header
    # userId,movieId,rating,timestamp, first line 1,1,4.0,964982703: half stars written 0.5 .. 5.0,
    # unix seconds. Half stars round down to the type of their whole star (0.5 a view, 3.5 a favorite).
    "movielens_csv": ColumnMapping(
        format="csv",
        user_id="userId",
        item_id="movieId",
        event_time="timestamp",
        time_format="unix_s",
        event_type="rating",
        event_type_values=ML_HALF_STARS,
    ),
    # "One line per user" sequence files of LightGCN (Gowalla, Yelp2018, Amazon-Book train.txt) and
    # SASRec: `user item item ...` space-separated, in the order of the user's interactions, no time
    # (SASRec's `user item` per line, a user's lines consecutive, reads the same). The items get a
    # synthetic time (recsys.raw_files.SEQUENCE_*): all but the last on 2000-01-01 from 00:00:00 one
    # second apart, the last at 2000-01-02 23:59:59 UTC. With window.test_days 1 (the default) the test
    # day is then every user's last item and the training day the rest: leave-last-out, as these papers
    # evaluate. A file with a separate test split (LightGCN's test.txt) is not a later day of the same
    # log: ingest the train file only.
    "sequence": ColumnMapping(format="sequence"),
}

DIGINETICA_ITEMS = ItemsMapping(delimiter=";", item_id="itemId", category="categoryId", brand=None, price=None)

# Items files whose layout differs from item_id,category,brand,price, by the preset of their log.
ITEMS_PRESETS: dict[str, ItemsMapping] = {
    # Diginetica's product-categories.csv: itemId;categoryId
    "diginetica": DIGINETICA_ITEMS,
    "diginetica_purchases": DIGINETICA_ITEMS,
}
