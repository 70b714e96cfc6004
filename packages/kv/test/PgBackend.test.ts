/**
 * The PostgreSQL backend on its own, against a real PostgreSQL: schema migration, compare-and-set, content
 * round trips, paged listings, and outages. (Riak's semantics over it are the conformance suite's job.)
 */
import { assert, describe, it } from "@effect/vitest"
import * as PgBackend from "@warren/kv/PgBackend"
import type { KvBackend } from "@warren/kv/KvBackend"
import { Chunk, Effect, Option, Schedule, Stream } from "effect"
import * as pgContent from "../src/internal/pgContent.js"
import { freshDatabase, query } from "./support/postgres.js"
import { makeProxy } from "./support/tcpProxy.js"

const enc = (s: string) => new TextEncoder().encode(s)
const dec = (b: Uint8Array) => new TextDecoder().decode(b)
const address = (key: string, bucket = "b", type = "default") => ({
  type: enc(type),
  bucket: enc(bucket),
  key: enc(key)
})
const record = (vclock: string, value: string) => ({
  vclock: enc(vclock),
  content: { value: enc(value), vtag: enc(`t-${vclock}`), lastMod: 1_700_000_000, lastModUsecs: 5 }
})
/** Byte arrays (Buffers or not) as number arrays, for deep comparison. */
const plain = (u: unknown): unknown =>
  u instanceof Uint8Array
    ? [...u]
    : Array.isArray(u)
    ? u.map(plain)
    : typeof u === "object" && u !== null
    ? Object.fromEntries(Object.entries(u).map(([k, v]) => [k, plain(v)]))
    : u
const names = <E>(stream: Stream.Stream<ReadonlyArray<Uint8Array>, E>) =>
  Effect.map(Stream.runCollect(stream), (batches) => Chunk.toArray(batches).map((b) => b.map(dec)))

describe("PgBackend", () => {
  it.scopedLive("applies its schema once, also when servers start together", () =>
    Effect.gen(function*() {
      const url = yield* freshDatabase
      const [a, b] = yield* Effect.all([PgBackend.make({ url }), PgBackend.make({ url })], { concurrency: 2 })
      assert.isTrue(yield* a.compareAndSet(address("k"), Option.none(), Option.some(record("v1", "x"))))
      const c = yield* PgBackend.make({ url })
      const seen = yield* c.get(address("k"))
      assert.strictEqual(dec(Option.getOrThrow(seen).content.value), "x")
      assert.strictEqual((yield* b.usage).objects, 1)
      const applied = yield* query<{ readonly migration_id: number; readonly name: string }>(
        url,
        "SELECT migration_id, name FROM warren_kv_migrations"
      )
      assert.deepStrictEqual(applied.map((m) => [m.migration_id, m.name]), [
        [1, "objects"],
        [2, "siblings_and_bucket_props"]
      ])
    }))

  it.scopedLive("upgrades a database of the first schema: its rows read as before, siblings and props work", () =>
    Effect.gen(function*() {
      const url = yield* freshDatabase
      // The schema and a row as the release before siblings left them (migration 1 only).
      const legacy = Buffer.concat([Buffer.from([0x77, 1]), Buffer.alloc(8, 7), Buffer.from([0, 0, 0, 0, 0, 0, 0, 9])])
      const content = Buffer.from(pgContent.encode(record("x", "old").content)).toString("hex")
      yield* query(
        url,
        `CREATE TABLE warren_kv_migrations (migration_id integer PRIMARY KEY,
           created_at timestamp with time zone NOT NULL DEFAULT now(), name text NOT NULL);
         CREATE TABLE warren_kv_objects (bucket_type bytea NOT NULL, bucket bytea NOT NULL, key bytea NOT NULL,
           vclock bytea NOT NULL, content bytea NOT NULL, size bigint NOT NULL,
           PRIMARY KEY (bucket_type, bucket, key));
         INSERT INTO warren_kv_migrations (migration_id, name) VALUES (1, 'objects');
         INSERT INTO warren_kv_objects VALUES ('\\x${Buffer.from("default").toString("hex")}', '\\x62',
           '\\x6b', '\\x${legacy.toString("hex")}', '\\x${content}', 200)`
      )
      const backend = yield* PgBackend.make({ url })
      const old = Option.getOrThrow(yield* backend.get(address("k")))
      assert.strictEqual(dec(old.content.value), "old")
      assert.deepStrictEqual([...old.vclock], [...legacy])
      assert.isUndefined(old.siblings)
      const two = { ...record("v2", "new"), siblings: [record("v0", "other").content] }
      assert.isTrue(yield* backend.compareAndSet(address("k"), Option.some(old.vclock), Option.some(two)))
      const now = Option.getOrThrow(yield* backend.get(address("k")))
      assert.deepStrictEqual([dec(now.content.value), ...(now.siblings ?? []).map((c) => dec(c.value))], [
        "new",
        "other"
      ])
      yield* backend.setBucketProps(enc("default"), enc("b"), Option.some({ allowMult: true }))
      assert.deepStrictEqual(yield* backend.getBucketProps(enc("default"), enc("b")), Option.some({ allowMult: true }))
    }))

  it.scopedLive("bucket properties and siblings written through one backend are read through another", () =>
    Effect.gen(function*() {
      const url = yield* freshDatabase
      const [a, b] = yield* Effect.all([PgBackend.make({ url }), PgBackend.make({ url })], { concurrency: 2 })
      yield* a.setBucketProps(enc("t"), enc("b"), Option.some({ allowMult: true, r: "one", nVal: 5 }))
      assert.deepStrictEqual(
        yield* b.getBucketProps(enc("t"), enc("b")),
        Option.some({ allowMult: true, r: "one", nVal: 5 })
      )
      assert.isTrue(Option.isNone(yield* b.getBucketProps(enc("default"), enc("b"))), "per type")
      const two = { ...record("v2", "new"), siblings: [record("v1", "old").content] }
      assert.isTrue(yield* a.compareAndSet(address("k", "b", "t"), Option.none(), Option.some(two)))
      const read = yield* b.getWithBucketProps(address("k", "b", "t"))
      assert.deepStrictEqual(plain(Option.getOrThrow(read.object)), plain(two))
      assert.deepStrictEqual(read.props, Option.some({ allowMult: true, r: "one", nVal: 5 }))
      const none = yield* b.getWithBucketProps(address("missing", "other"))
      assert.isTrue(Option.isNone(none.object) && Option.isNone(none.props))
      yield* b.setBucketProps(enc("t"), enc("b"), Option.none())
      assert.isTrue(Option.isNone(yield* a.getBucketProps(enc("t"), enc("b"))))
    }))

  it.scopedLive("stores every content field and returns it as written", () =>
    Effect.gen(function*() {
      const backend = yield* PgBackend.make({ url: yield* freshDatabase })
      const content = {
        value: enc("v"),
        contentType: enc("text/plain"),
        charset: enc("utf-8"),
        contentEncoding: enc("identity"),
        links: [{ bucket: enc("lb"), key: enc("lk"), tag: enc("lt") }, { key: enc("only-key") }],
        usermeta: [{ key: enc("m"), value: enc("1") }, { key: enc("flag") }],
        indexes: [{ key: enc("i_bin"), value: enc("x") }],
        vtag: enc("vt"),
        lastMod: 1_700_000_123,
        lastModUsecs: 999_999
      }
      const binaryKey = { type: enc("t"), bucket: new Uint8Array([0, 255, 1]), key: new Uint8Array([0, 0, 128]) }
      assert.isTrue(yield* backend.compareAndSet(binaryKey, Option.none(), Option.some({ vclock: enc("c"), content })))
      const got = Option.getOrThrow(yield* backend.get(binaryKey))
      assert.deepStrictEqual(plain(got), plain({ vclock: enc("c"), content }))
      const bare = yield* Effect.zipRight(
        backend.compareAndSet(address("p"), Option.none(), Option.some(record("c2", "plain"))),
        backend.get(address("p"))
      )
      assert.deepStrictEqual(Object.keys(Option.getOrThrow(bare).content).sort(), [
        "lastMod",
        "lastModUsecs",
        "value",
        "vtag"
      ])
    }))

  it.scopedLive("compare-and-set changes a key only from the expected vclock", () =>
    Effect.gen(function*() {
      const backend = yield* PgBackend.make({ url: yield* freshDatabase })
      const k = address("k")
      assert.isTrue(yield* backend.compareAndSet(k, Option.none(), Option.none()))
      assert.isTrue(yield* backend.compareAndSet(k, Option.none(), Option.some(record("v1", "one"))))
      assert.isFalse(yield* backend.compareAndSet(k, Option.none(), Option.some(record("v9", "again"))))
      assert.isFalse(yield* backend.compareAndSet(k, Option.none(), Option.none()))
      assert.isFalse(yield* backend.compareAndSet(k, Option.some(enc("v0")), Option.some(record("v2", "stale"))))
      assert.isTrue(yield* backend.compareAndSet(k, Option.some(enc("v1")), Option.some(record("v2", "two"))))
      assert.strictEqual(dec(Option.getOrThrow(yield* backend.get(k)).content.value), "two")
      assert.isFalse(yield* backend.compareAndSet(k, Option.some(enc("v1")), Option.none()))
      assert.isTrue(yield* backend.compareAndSet(k, Option.some(enc("v2")), Option.none()))
      assert.isTrue(Option.isNone(yield* backend.get(k)))
      assert.isFalse(yield* backend.delete(k))
      yield* backend.compareAndSet(k, Option.none(), Option.some(record("v3", "three")))
      assert.isTrue(yield* backend.delete(k))
    }))

  it.scopedLive("of racing compare-and-sets from the same vclock on two pools, exactly one wins", () =>
    Effect.gen(function*() {
      const url = yield* freshDatabase
      const [a, b] = yield* Effect.all([PgBackend.make({ url }), PgBackend.make({ url })])
      const k = address("race")
      for (let round = 0; round < 20; round++) {
        const expected = round === 0 ? Option.none() : Option.some(enc(`r${round - 1}`))
        const attempts = Array.from(
          { length: 8 },
          (_, i) => (i % 2 === 0 ? a : b).compareAndSet(k, expected, Option.some(record(`r${round}`, `w${i}`)))
        )
        const won = yield* Effect.all(attempts, { concurrency: "unbounded" })
        assert.strictEqual(won.filter((w) => w).length, 1, `round ${round}`)
      }
    }))

  it.scopedLive("lists keys and buckets in bounded batches, across pages", () =>
    Effect.gen(function*() {
      const backend = yield* PgBackend.make({ url: yield* freshDatabase, listBatchSize: 7, listBatchBytes: 10 })
      const put = (a: ReturnType<typeof address>) =>
        backend.compareAndSet(a, Option.none(), Option.some(record("v", "x")))
      yield* Effect.forEach(Array.from({ length: 50 }, (_, i) => address(`k${i}`, "big")), put)
      yield* Effect.forEach(Array.from({ length: 20 }, (_, i) => address("x", `bucket${i}`)), put)
      yield* put(address("x", "elsewhere", "other-type"))

      const keys = yield* names(backend.listKeys(enc("default"), enc("big")))
      assert.isTrue(keys.every((batch) => batch.length > 0 && batch.length <= 7))
      assert.isTrue(keys.every((batch) => batch.length === 1 || batch.join("").length <= 10))
      assert.deepStrictEqual(keys.flat().sort(), Array.from({ length: 50 }, (_, i) => `k${i}`).sort())

      const buckets = yield* names(backend.listBuckets(enc("default")))
      assert.isTrue(buckets.every((batch) => batch.length > 0 && batch.length <= 7))
      assert.deepStrictEqual(
        buckets.flat().sort(),
        ["big", ...Array.from({ length: 20 }, (_, i) => `bucket${i}`)].sort()
      )
      assert.deepStrictEqual((yield* names(backend.listBuckets(enc("other-type")))).flat(), ["elsewhere"])
      assert.deepStrictEqual(yield* names(backend.listKeys(enc("default"), enc("nothing"))), [])
      assert.deepStrictEqual(yield* names(backend.listBuckets(enc("nothing"))), [])
    }))

  it.scopedLive(
    "an outage fails requests with StorageError, and requests succeed again when it ends",
    () =>
      Effect.gen(function*() {
        const proxy = yield* makeProxy(yield* freshDatabase)
        yield* proxy.start
        const backend: KvBackend["Type"] = yield* PgBackend.make({
          url: proxy.url,
          connectTimeout: "1 second",
          requestTimeout: "2 seconds"
        })
        const k = address("k")
        assert.isTrue(yield* backend.compareAndSet(k, Option.none(), Option.some(record("v1", "before"))))
        yield* proxy.stop
        const attempts = [
          Effect.flip(backend.get(k)),
          Effect.flip(backend.compareAndSet(k, Option.some(enc("v1")), Option.none())),
          Effect.flip(names(backend.listKeys(enc("default"), enc("b"))))
        ]
        for (const failed of yield* Effect.all(attempts)) {
          assert.strictEqual(failed._tag, "StorageError")
          if (failed._tag === "StorageError") assert.strictEqual(failed.reason, "Unavailable")
        }
        yield* proxy.start
        assert.strictEqual(dec(Option.getOrThrow(yield* backend.get(k)).content.value), "before")
      }),
    60_000
  )

  it.scopedLive(
    "a database that stops answering fails requests after requestTimeout; they succeed once it answers",
    () =>
      Effect.gen(function*() {
        const proxy = yield* makeProxy(yield* freshDatabase)
        yield* proxy.start
        const backend = yield* PgBackend.make({
          url: proxy.url,
          connectTimeout: "1 second",
          requestTimeout: "1 second"
        })
        const k = address("k")
        assert.isTrue(yield* backend.compareAndSet(k, Option.none(), Option.some(record("v1", "before"))))
        yield* proxy.stall
        const started = Date.now()
        const failed = yield* Effect.flip(backend.get(k))
        const waited = Date.now() - started
        assert.strictEqual(failed._tag, "StorageError")
        assert.include(failed.message, "no answer within 1s")
        // It answers at the timeout, not after the driver's (5 s) query cancellation.
        assert.isBelow(waited, 4000)
        yield* proxy.unstall
        const after = yield* backend.get(k).pipe(
          Effect.retry({ times: 20, schedule: Schedule.spaced("100 millis") })
        )
        assert.strictEqual(dec(Option.getOrThrow(after).content.value), "before")
      }),
    60_000
  )

  it.scopedLive("start-up waits for a database that is not up yet", () =>
    Effect.gen(function*() {
      const proxy = yield* makeProxy(yield* freshDatabase)
      const starting = yield* Effect.fork(PgBackend.make({ url: proxy.url, startTimeout: "30 seconds" }))
      yield* proxy.start
      const backend = yield* starting
      assert.isTrue(yield* backend.compareAndSet(address("k"), Option.none(), Option.some(record("v", "x"))))
    }), 60_000)

  it.scopedLive(
    "a database that stays away fails start-up with StorageError after startTimeout",
    () =>
      Effect.gen(function*() {
        const proxy = yield* makeProxy(yield* freshDatabase)
        const failed = yield* Effect.flip(PgBackend.make({ url: proxy.url, startTimeout: "1 second" }))
        assert.strictEqual(failed._tag, "StorageError")
        assert.include(failed.message, "postgres")
      }),
    60_000
  )

  it.effect("refuses bad options with a typed error", () =>
    Effect.gen(function*() {
      const failed = yield* Effect.flip(Effect.scoped(PgBackend.make({ url: "", maxConnections: 0 })))
      assert.strictEqual(failed._tag, "ParseError")
    }))
})
