"""Fill the test bed with sample data: PostgreSQL `journal` and `recipes`, MongoDB `nightscout` and `research`.

Run with the test venv's python after `source $LIFEBOAT_TESTBED_DIR/env.sh`. Idempotent: each database is
dropped and created again. The data is deterministic (fixed random seed) so tests can compare restores.
With LIFEBOAT_RUN_ID set (the integration suite sets it), each name gets `_<run id>` appended (`journal_1a2b3c4d`),
so that suites running at once on one test bed never drop each other's databases; the demo and the molecule
scenarios leave it unset and get the plain names.
"""
import argparse
import datetime as dt
import os
import random
import sys
import uuid
from decimal import Decimal

UTC = dt.UTC
BASE_TIME = dt.datetime(2024, 11, 1, tzinfo=UTC)
# Text that breaks naive encodings: emoji (with ZWJ), CJK, combining accents, RTL, NUL-free control chars.
UNICODE_SAMPLES = [
    "Café au lait ☕", "日本語のテキスト、漢字とかな", "e\u0301te\u0301 (combining accents)",
    "👩\u200d👩\u200d👧 family, 🩸 glucose", "Ελληνικά και עברית", "tab\tand\nnewline", "Ünïcödé ß ﬁ",
]


def env(name, default=None):
    value = os.environ.get(name, default)
    if value is None:
        sys.exit(f"seed.py: {name} is not set; source $LIFEBOAT_TESTBED_DIR/env.sh first")
    return value


def sample_name(base):
    """The name of a sample database for this run: BASE, or BASE_<LIFEBOAT_RUN_ID> when that is set."""
    run_id = os.environ.get("LIFEBOAT_RUN_ID")
    return f"{base}_{run_id}" if run_id else base


def read_secret(var):
    with open(env(var), encoding="utf-8") as handle:
        return handle.read().strip()


# ---------------------------------------------------------------- PostgreSQL

JOURNAL_SCHEMA = """
CREATE TYPE journal_mood AS ENUM ('awful', 'meh', 'good', 'great');
CREATE TABLE auth_user (
    id serial PRIMARY KEY, username varchar(150) NOT NULL UNIQUE, email varchar(254) NOT NULL,
    first_name varchar(150) NOT NULL, last_name varchar(150) NOT NULL, password varchar(128) NOT NULL,
    is_staff boolean NOT NULL, is_active boolean NOT NULL, date_joined timestamptz NOT NULL,
    last_login timestamptz);
CREATE TABLE journal_tag (id bigserial PRIMARY KEY, name varchar(64) NOT NULL UNIQUE, color char(7));
-- An explicit sequence used by a table's default (not a serial), starting at a non-trivial value.
CREATE SEQUENCE journal_entry_id_seq START 1000;
CREATE TABLE journal_entry (
    id bigint PRIMARY KEY DEFAULT nextval('journal_entry_id_seq'),
    author_id integer NOT NULL REFERENCES auth_user (id) ON DELETE CASCADE,
    title text NOT NULL, body text NOT NULL, mood journal_mood, metadata jsonb NOT NULL,
    attachment bytea, amount numeric(20, 6), created_at timestamptz NOT NULL, updated_at timestamptz);
ALTER SEQUENCE journal_entry_id_seq OWNED BY journal_entry.id;
CREATE TABLE journal_entry_tags (
    id bigserial PRIMARY KEY, entry_id bigint NOT NULL REFERENCES journal_entry (id) ON DELETE CASCADE,
    tag_id bigint NOT NULL REFERENCES journal_tag (id), UNIQUE (entry_id, tag_id));
CREATE TABLE journal_measurement (
    id bigserial, user_id integer NOT NULL REFERENCES auth_user (id), measured_at timestamptz NOT NULL,
    kind text NOT NULL, value numeric(20, 6) NOT NULL, PRIMARY KEY (id, measured_at)
) PARTITION BY RANGE (measured_at);
CREATE TABLE journal_measurement_2024 PARTITION OF journal_measurement
    FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE journal_measurement_2025 PARTITION OF journal_measurement
    FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE journal_measurement_default PARTITION OF journal_measurement DEFAULT;
-- A standalone sequence (no owner) whose current value a restore must reproduce.
CREATE SEQUENCE journal_invoice_number_seq START 10000 INCREMENT 7;
CREATE INDEX journal_entry_author_created ON journal_entry (author_id, created_at DESC);
CREATE INDEX journal_entry_metadata_gin ON journal_entry USING gin (metadata jsonb_path_ops);
CREATE INDEX journal_entry_title_lower ON journal_entry (lower(title));
CREATE INDEX journal_entry_unhappy ON journal_entry (created_at) WHERE mood = 'awful';
CREATE INDEX journal_measurement_user_time ON journal_measurement (user_id, measured_at);
CREATE VIEW journal_entry_summary AS
    SELECT u.username, count(e.id) AS entries, sum(e.amount) AS total_amount, max(e.created_at) AS last_entry
    FROM auth_user u LEFT JOIN journal_entry e ON e.author_id = u.id GROUP BY u.username;
COMMENT ON TABLE journal_entry IS 'Diary entries (Django-like app "journal")';
"""

RECIPES_SCHEMA = """
CREATE TABLE recipe (id serial PRIMARY KEY, name text NOT NULL UNIQUE, servings smallint NOT NULL,
    steps jsonb NOT NULL, photo bytea, created_at timestamptz NOT NULL);
CREATE TABLE ingredient (id serial PRIMARY KEY, name text NOT NULL UNIQUE);
CREATE TABLE recipe_ingredient (recipe_id integer REFERENCES recipe (id) ON DELETE CASCADE,
    ingredient_id integer REFERENCES ingredient (id), quantity numeric(20, 6) NOT NULL, unit text NOT NULL,
    PRIMARY KEY (recipe_id, ingredient_id));
CREATE INDEX recipe_ingredient_by_ingredient ON recipe_ingredient (ingredient_id);
"""


def recreate_pg_database(psycopg, admin_conninfo, name, schema):
    with psycopg.connect(**admin_conninfo, dbname="postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}" ENCODING \'UTF8\' TEMPLATE template0')
    conn = psycopg.connect(**admin_conninfo, dbname=name)
    conn.execute(schema)
    return conn


def seed_journal(psycopg, conninfo, rows, rng):
    from psycopg.types.json import Jsonb
    n_users, n_tags = max(5, rows // 20), 20
    with recreate_pg_database(psycopg, conninfo, sample_name("journal"), JOURNAL_SCHEMA) as conn, conn.cursor() as cur:
        with cur.copy("COPY auth_user (username, email, first_name, last_name, password, is_staff, is_active,"
                      " date_joined, last_login) FROM STDIN") as copy:
            for i in range(1, n_users + 1):
                joined = BASE_TIME - dt.timedelta(days=rng.randint(30, 900))
                copy.write_row((f"user{i:04d}", f"user{i}@example.org", rng.choice(["Zoë", "José", "李", "Анна"]),
                                f"Lästname{i}", f"pbkdf2_sha256$600000${uuid.UUID(int=rng.getrandbits(128)).hex}",
                                i == 1, i % 17 != 0, joined, None if i % 5 == 0 else joined + dt.timedelta(days=3)))
        with cur.copy("COPY journal_tag (name, color) FROM STDIN") as copy:
            for i in range(n_tags):
                copy.write_row((f"tag-{i}-{'🏷' if i % 4 == 0 else 'x'}", f"#{rng.getrandbits(24):06x}"))
        with cur.copy("COPY journal_entry (author_id, title, body, mood, metadata, attachment, amount, created_at,"
                      " updated_at) FROM STDIN") as copy:
            for i in range(rows):
                created = BASE_TIME - dt.timedelta(minutes=rng.randint(0, 500_000))
                metadata = {"weather": rng.choice(["sunny", "rain", "❄"]), "steps": rng.randint(0, 30000),
                            "location": {"lat": round(rng.uniform(-90, 90), 5), "lon": round(rng.uniform(-180, 180), 5)},
                            "nested": {"level2": {"level3": [1, "two", None, True]}}}
                copy.write_row((rng.randint(1, n_users), f"Entry {i} {rng.choice(UNICODE_SAMPLES)}",
                                " ".join(rng.choice(UNICODE_SAMPLES) for _word in range(rng.randint(1, 8))),
                                rng.choice([None, "awful", "meh", "good", "great"]), Jsonb(metadata),
                                rng.randbytes(rng.randint(0, 256)) if i % 3 else None,
                                Decimal(rng.randint(-10**13, 10**13)) / Decimal(10**6), created,
                                created + dt.timedelta(hours=1) if i % 2 else None))
        cur.execute("INSERT INTO journal_entry_tags (entry_id, tag_id) SELECT e.id, t.id FROM journal_entry e"
                    " JOIN journal_tag t ON (e.id + t.id) % 7 = 0")
        n_links = cur.rowcount
        with cur.copy("COPY journal_measurement (user_id, measured_at, kind, value) FROM STDIN") as copy:
            for _row in range(rows):  # spread over 2024, 2025 and later, so every partition gets rows
                at = dt.datetime(2024, 1, 1, tzinfo=UTC) + dt.timedelta(hours=rng.randint(0, 3 * 365 * 24))
                copy.write_row((rng.randint(1, n_users), at, rng.choice(["weight_kg", "sleep_h", "mood_score"]),
                                Decimal(rng.randint(0, 200_000_000)) / Decimal(10**6)))
        cur.execute("SELECT setval('journal_invoice_number_seq', %s)", (10000 + 7 * (rows + 42),))
        cur.execute("ANALYZE")
    return n_users + n_tags + rows * 2 + n_links


def seed_recipes(psycopg, conninfo, rng):
    from psycopg.types.json import Jsonb
    names = ["flour", "sugar", "butter", "egg", "milk", "salt", "味噌", "crème fraîche", "jalapeño", "tofu"]
    with recreate_pg_database(psycopg, conninfo, sample_name("recipes"), RECIPES_SCHEMA) as conn, conn.cursor() as cur:
        cur.executemany("INSERT INTO ingredient (name) VALUES (%s)", [(n,) for n in names])
        for i in range(50):
            cur.execute("INSERT INTO recipe (name, servings, steps, photo, created_at) VALUES (%s, %s, %s, %s, %s)"
                        " RETURNING id", (f"Recipe {i} {rng.choice(UNICODE_SAMPLES)}", rng.randint(1, 8),
                                          Jsonb([{"step": s, "text": f"Stir {s} min"} for s in range(3)]),
                                          rng.randbytes(64), BASE_TIME - dt.timedelta(days=i)))
            recipe_id = cur.fetchone()[0]
            for ingredient_id in rng.sample(range(1, len(names) + 1), 4):
                cur.execute("INSERT INTO recipe_ingredient VALUES (%s, %s, %s, %s)",
                            (recipe_id, ingredient_id, Decimal(rng.randint(1, 5_000_000)) / 1000, "g"))
    return len(names) + 50 * 5


# ---------------------------------------------------------------- MongoDB (FerretDB)

def probe_decimal128(db, bson):
    """FerretDB 1.x has no Decimal128: it drops the connection on one. Find out once, on a scratch collection."""
    from pymongo.errors import PyMongoError
    try:
        db.lifeboat_probe.insert_one({"d": bson.Decimal128("1.5")})
        return db.lifeboat_probe.find_one()["d"] == bson.Decimal128("1.5")
    except PyMongoError:
        return False
    finally:
        db.drop_collection("lifeboat_probe")


def create_indexes(collection, specs, left_out):
    """Create each index alone; an option the server rejects is dropped and the index made without it."""
    from pymongo.errors import OperationFailure
    optional = ("expireAfterSeconds", "partialFilterExpression", "sparse")
    for keys, options in specs:
        name = f"{collection.name}.{options['name']}"
        try:
            collection.create_index(keys, **options)
        except OperationFailure as exc:
            plain = {k: v for k, v in options.items() if k not in optional}
            if plain == options:
                raise
            collection.create_index(keys, **plain)
            left_out.append(f"{'/'.join(set(options) - set(plain))} of index {name} ({exc.details.get('errmsg')})")
            continue
        kept = collection.index_information()[options["name"]]
        dropped = [option for option in optional if option in options and option not in kept]
        if dropped:
            left_out.append(f"{'/'.join(dropped)} of index {name} (accepted but silently not kept)")


def seed_nightscout(client, bson, docs, rng, decimal_ok, left_out):
    db = client[sample_name("nightscout")]
    client.drop_database(db.name)
    dec = bson.Decimal128 if decimal_ok else (lambda text: None)
    entries = []
    for i in range(docs):  # one CGM reading every 5 minutes, newest first
        when = BASE_TIME - dt.timedelta(minutes=5 * i)
        doc = {"_id": bson.ObjectId.from_datetime(when), "sgv": rng.randint(40, 400), "date": when,
               "dateString": when.isoformat(), "type": "sgv", "device": "xDrip-DexcomG6",
               "direction": rng.choice(["Flat", "FortyFiveUp", "SingleDown"]), "noise": 1,
               "raw": bson.Binary(rng.randbytes(16)), "sensor": {"id": bson.Binary(uuid.UUID(int=i).bytes, 4),
               "calibration": {"slope": dec(f"{rng.randint(800, 1200)}.125"), "intercept": rng.uniform(-5, 5),
                               "history": {"last": {"at": when - dt.timedelta(hours=12), "ok": True}}}}}
        if not decimal_ok:
            del doc["sensor"]["calibration"]["slope"]
        entries.append(doc)
    db.entries.insert_many(entries)
    treatments = []
    for i in range(max(1, docs // 5)):
        when = BASE_TIME - dt.timedelta(minutes=25 * i)
        doc = {"eventType": rng.choice(["Meal Bolus", "Correction Bolus", "Carb Correction"]),
               "created_at": when.isoformat(), "timestamp": when, "enteredBy": rng.choice(UNICODE_SAMPLES),
               "insulin": round(rng.uniform(0.1, 12), 2), "carbs": rng.randint(0, 120),
               "foods": [{"name": n, "carbs": rng.randint(1, 60), "portion": {"size": 1.5, "unit": "g"}}
                         for n in rng.sample(["apple", "rice", "pão", "ラーメン"], 2)],
               "boluscalc": {"profile": "Default", "iob": {"bolusiob": 1.2, "basaliob": {"net": -0.3}}},
               "notes": rng.choice(UNICODE_SAMPLES), "units": dec("0.05") if decimal_ok else 0.05}
        treatments.append(doc)
    db.treatments.insert_many(treatments)
    db.devicestatus.insert_many([
        {"device": "openaps://phone", "created_at": BASE_TIME - dt.timedelta(minutes=5 * i),
         "openaps": {"iob": {"iob": rng.uniform(0, 5), "activity": 0.01},
                     "suggested": {"predBGs": {"IOB": [rng.randint(60, 250) for _step in range(12)]}}},
         "pump": {"battery": {"percent": rng.randint(5, 100)}, "reservoir": rng.uniform(0, 300),
                  "status": {"status": "normal", "bolusing": False}},
         "uploader": {"battery": rng.randint(5, 100)}}
        for i in range(max(1, docs // 5))])
    century = 100 * 365 * 24 * 3600  # a TTL long enough that no sample document ever expires
    create_indexes(db.entries, [([("date", -1), ("type", 1)], {"name": "date_type"}),
                                ([("device", 1), ("date", 1)], {"name": "device_date_unique", "unique": True}),
                                ([("sysTime", 1)], {"name": "sysTime_sparse", "sparse": True})], left_out)
    create_indexes(db.treatments, [([("created_at", -1)], {"name": "created_at"}),
                                   ([("eventType", 1), ("timestamp", -1)],
                                    {"name": "insulin_partial", "partialFilterExpression": {"insulin": {"$gt": 0}}})],
                   left_out)
    create_indexes(db.devicestatus, [([("created_at", 1)], {"name": "created_at_ttl", "expireAfterSeconds": century})],
                   left_out)
    return len(entries) + 2 * max(1, docs // 5)


def seed_research(client, bson, rng, decimal_ok):
    db = client[sample_name("research")]
    client.drop_database(db.name)
    db.samples.insert_many([{"code": f"S-{i:05d}", "taken": BASE_TIME - dt.timedelta(days=i),
                             "values": [rng.gauss(5, 1) for _value in range(5)], "lab": {"name": "Lab ünïcode 研究所"},
                             "concentration": bson.Decimal128(f"{i}.000001") if decimal_ok else f"{i}.000001",
                             "spectrum": bson.Binary(rng.randbytes(32))} for i in range(200)])
    db.samples.create_index([("code", 1)], unique=True, name="code_unique")
    db.notes.insert_many([{"sample": f"S-{i:05d}", "text": rng.choice(UNICODE_SAMPLES)} for i in range(50)])
    return 250


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg-rows", type=int, default=1000, help="rows in the main journal tables (default 1000)")
    parser.add_argument("--mongo-docs", type=int, default=3000, help="documents in nightscout.entries (default 3000)")
    parser.add_argument("--skip-pg", action="store_true", help="leave PostgreSQL alone")
    parser.add_argument("--skip-mongo", action="store_true", help="leave MongoDB alone")
    parser.add_argument("--mongo-noauth", action="store_true",
                        help="seed the FerretDB instance without authentication (LIFEBOAT_MONGO_NOAUTH_PORT)")
    parser.add_argument("--seed", type=int, default=20241101, help="random seed (data is deterministic)")
    args = parser.parse_args()

    if not args.skip_pg:
        import psycopg
        conninfo = {"host": env("LIFEBOAT_PG_HOST"), "port": int(env("LIFEBOAT_PG_PORT")),
                    "user": env("LIFEBOAT_PG_USER"), "password": read_secret("LIFEBOAT_PG_PASSWORD_FILE")}
        count = seed_journal(psycopg, conninfo, args.pg_rows, random.Random(args.seed))
        count += seed_recipes(psycopg, conninfo, random.Random(args.seed + 1))
        print(f"postgres: {sample_name('journal')} and {sample_name('recipes')} seeded ({count} rows)")

    if not args.skip_mongo:
        import bson
        import pymongo
        host = env("LIFEBOAT_MONGO_HOST")
        if args.mongo_noauth:
            client = pymongo.MongoClient(host, int(env("LIFEBOAT_MONGO_NOAUTH_PORT")), tz_aware=True)
        else:
            client = pymongo.MongoClient(host, int(env("LIFEBOAT_MONGO_PORT")), username=env("LIFEBOAT_MONGO_USER"),
                                         password=read_secret("LIFEBOAT_MONGO_PASSWORD_FILE"),
                                         authSource="admin", tz_aware=True)
        left_out = []
        decimal_ok = probe_decimal128(client[sample_name("nightscout")], bson)
        if not decimal_ok:
            left_out.append("Decimal128 values (server closes the connection on them: no Decimal128 in FerretDB 1.x)")
        with client:
            count = seed_nightscout(client, bson, args.mongo_docs, random.Random(args.seed), decimal_ok, left_out)
            count += seed_research(client, bson, random.Random(args.seed + 1), decimal_ok)
        print(f"mongo: {sample_name('nightscout')} and {sample_name('research')} seeded ({count} documents)")
        if left_out:
            print("left out, unsupported by this server: " + "; ".join(left_out))


if __name__ == "__main__":
    main()
