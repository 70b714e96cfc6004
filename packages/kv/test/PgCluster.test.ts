/**
 * Two PB servers on one PostgreSQL database, the way Riak nodes sit behind a load balancer: what one
 * server writes the other reads; concurrent writers through both servers lose no update; a database
 * outage gives clients Riak-style errors and the servers serve again when it ends.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { call, connect } from "./support/pbClient.js"
import { freshDatabase, startPgServer } from "./support/postgres.js"
import { type BucketPropsResult, type FetchResult, promised, riakClient } from "./support/riakClient.js"
import { dec, enc, expectTag, getReq as get, putReq as put } from "./support/requests.js"
import { makeProxy } from "./support/tcpProxy.js"

/** Two servers on one fresh database. */
const twoServers = Effect.gen(function*() {
  const url = yield* freshDatabase
  const [a, b] = yield* Effect.all([startPgServer(url), startPgServer(url)], { concurrency: 2 })
  return { a, b, url }
})

describe("two PB servers sharing PostgreSQL", () => {
  it.scopedLive("basho-riak-client: store, fetch, delete and list keys through either server", () =>
    Effect.gen(function*() {
      const { a, b } = yield* twoServers
      const viaA = yield* riakClient(a.port)
      const viaB = yield* riakClient(b.port)

      yield* promised((cb) => viaA.storeValue({ bucket: "users", key: "alice", value: { name: "Alice" } }, cb))
      const alice = yield* promised<FetchResult>((cb) => viaB.fetchValue({ bucket: "users", key: "alice" }, cb))
      assert.isFalse(alice.isNotFound)
      assert.deepStrictEqual(JSON.parse(alice.values[0]!.value.toString("utf8")), { name: "Alice" })
      assert.strictEqual(alice.values[0]!.contentType, "application/json")

      const generated = yield* promised<{ readonly generatedKey?: string }>((cb) =>
        viaB.storeValue({ bucket: "users", value: "anonymous" }, cb)
      )
      const anonymous = yield* promised<FetchResult>((cb) =>
        viaA.fetchValue({ bucket: "users", key: generated.generatedKey }, cb)
      )
      assert.strictEqual(anonymous.values[0]!.value.toString("utf8"), "anonymous")
      yield* promised((cb) => viaB.storeValue({ bucketType: "other", bucket: "things", key: "t", value: "x" }, cb))

      for (const client of [viaA, viaB]) {
        const keys = yield* promised<{ readonly keys: ReadonlyArray<string> }>((cb) =>
          client.listKeys({ bucket: "users", stream: false }, cb)
        )
        assert.deepStrictEqual([...keys.keys].sort(), ["alice", generated.generatedKey!].sort())
        const buckets = yield* promised<{ readonly buckets: ReadonlyArray<string> }>((cb) =>
          client.listBuckets({ stream: false }, cb)
        )
        assert.deepStrictEqual([...buckets.buckets], ["users"])
      }

      const taken = yield* Effect.flip(
        promised((cb) => viaB.storeValue({ bucket: "users", key: "alice", value: "2", ifNoneMatch: true }, cb))
      )
      assert.match(taken.message, /match_found/)

      assert.isTrue(yield* promised<boolean>((cb) => viaB.deleteValue({ bucket: "users", key: "alice" }, cb)))
      const gone = yield* promised<FetchResult>((cb) => viaA.fetchValue({ bucket: "users", key: "alice" }, cb))
      assert.isTrue(gone.isNotFound)
    }))

  it.scopedLive("read-modify-write with if_not_modified through both servers loses no update", () =>
    Effect.gen(function*() {
      const { a, b } = yield* twoServers
      const writers = 6
      const increments = 15
      const setup = yield* connect(a.port)
      expectTag(yield* call(setup, put("c", "counter", "0")), "RpbPutResp")

      let conflicts = 0
      const writer = (port: number) =>
        Effect.gen(function*() {
          const conn = yield* connect(port)
          for (let done = 0; done < increments;) {
            const current = expectTag(yield* call(conn, get("c", "counter")), "RpbGetResp")
            const next = String(Number(dec(current.content?.[0]?.value)) + 1)
            assert.isDefined(current.vclock)
            const reply = yield* call(
              conn,
              put("c", "counter", next, { vclock: current.vclock!, if_not_modified: true })
            )
            if (reply._tag === "RpbPutResp") done++
            else {
              assert.strictEqual(expectTag(reply, "Error").errmsg, "modified")
              conflicts++
            }
          }
        })
      yield* Effect.all(
        Array.from({ length: writers }, (_, i) => writer(i % 2 === 0 ? a.port : b.port)),
        { concurrency: "unbounded" }
      )
      const final = expectTag(yield* call(setup, get("c", "counter")), "RpbGetResp")
      assert.strictEqual(dec(final.content?.[0]?.value), String(writers * increments))
      // The writers did race (otherwise this test would show nothing).
      assert.isAbove(conflicts, 0)
    }))

  it.scopedLive("siblings: concurrent writers from one fetched vclock through both servers all survive; then resolved", () =>
    Effect.gen(function*() {
      const { a, b } = yield* twoServers
      const viaA = yield* riakClient(a.port)
      const viaB = yield* riakClient(b.port)
      // allow_mult set through one server is what the other applies (the properties live in the database).
      yield* promised((cb) => viaA.storeBucketProps({ bucket: "carts", allowMult: true }, cb))
      assert.isTrue(
        (yield* promised<BucketPropsResult>((cb) => viaB.fetchBucketProps({ bucket: "carts" }, cb))).allowMult
      )

      yield* promised((cb) => viaA.storeValue({ bucket: "carts", key: "k", value: "base" }, cb))
      const base = yield* promised<FetchResult>((cb) => viaB.fetchValue({ bucket: "carts", key: "k" }, cb))
      const writers = 8
      yield* Effect.all(
        Array.from(
          { length: writers },
          (_, i) =>
            promised((cb) =>
              (i % 2 === 0 ? viaA : viaB).storeValue(
                { bucket: "carts", key: "k", value: `w${i}`, vclock: base.vclock },
                cb
              )
            )
        ),
        { concurrency: "unbounded" }
      )
      const expected = Array.from({ length: writers }, (_, i) => `w${i}`).sort()
      let seen: FetchResult | undefined
      for (const client of [viaA, viaB]) {
        seen = yield* promised<FetchResult>((cb) => client.fetchValue({ bucket: "carts", key: "k" }, cb))
        assert.deepStrictEqual(seen.values.map((v) => v.value.toString("utf8")).sort(), expected, "no lost update")
      }

      // A write with the vclock that saw every sibling resolves them, whichever server takes it.
      yield* promised((cb) => viaB.storeValue({ bucket: "carts", key: "k", value: "merged", vclock: seen!.vclock }, cb))
      for (const client of [viaA, viaB]) {
        const resolved = yield* promised<FetchResult>((cb) => client.fetchValue({ bucket: "carts", key: "k" }, cb))
        assert.deepStrictEqual(resolved.values.map((v) => v.value.toString("utf8")), ["merged"])
      }
      // The default bucket of the same database keeps one value per key.
      yield* promised((cb) => viaA.storeValue({ bucket: "plain", key: "k", value: "1" }, cb))
      yield* promised((cb) => viaB.storeValue({ bucket: "plain", key: "k", value: "2" }, cb))
      const plain = yield* promised<FetchResult>((cb) => viaA.fetchValue({ bucket: "plain", key: "k" }, cb))
      assert.deepStrictEqual(plain.values.map((v) => v.value.toString("utf8")), ["2"])
    }))

  it.scopedLive("concurrent if_none_match creates through both servers: exactly one wins", () =>
    Effect.gen(function*() {
      const { a, b } = yield* twoServers
      for (let round = 0; round < 10; round++) {
        const attempts = Array.from({ length: 6 }, (_, i) =>
          Effect.scoped(Effect.flatMap(
            connect(i % 2 === 0 ? a.port : b.port),
            (conn) => call(conn, put("once", `k${round}`, `w${i}`, { if_none_match: true }))
          )))
        const replies = yield* Effect.all(attempts, { concurrency: "unbounded" })
        assert.strictEqual(replies.filter((r) => r._tag === "RpbPutResp").length, 1)
        for (const r of replies) {
          if (r._tag !== "RpbPutResp") assert.strictEqual(expectTag(r, "Error").errmsg, "match_found")
        }
      }
    }))

  it.scopedLive("concurrent blind writes through both servers: the last write is one whole write", () =>
    Effect.gen(function*() {
      const { a, b } = yield* twoServers
      const writes = Array.from({ length: 20 }, (_, i) =>
        Effect.scoped(Effect.flatMap(
          connect(i % 2 === 0 ? a.port : b.port),
          (conn) => call(conn, put("lww", "k", `w${i}`, { return_body: true }))
        )))
      const replies = (yield* Effect.all(writes, { concurrency: "unbounded" })).map((r) => expectTag(r, "RpbPutResp"))
      const conn = yield* connect(b.port)
      const final = expectTag(yield* call(conn, get("lww", "k")), "RpbGetResp")
      const winner = replies.find((r) => Buffer.from(r.vclock!).equals(final.vclock!))
      assert.isDefined(winner)
      assert.strictEqual(dec(final.content?.[0]?.value), dec(winner!.content?.[0]?.value))
    }))

  it.scopedLive(
    "a database outage gives clients Riak-style errors; the server serves again when it ends",
    () =>
      Effect.gen(function*() {
        const proxy = yield* makeProxy(yield* freshDatabase)
        yield* proxy.start
        const server = yield* startPgServer(proxy.url, { connectTimeout: "1 second", requestTimeout: "2 seconds" })
        const conn = yield* connect(server.port)
        expectTag(yield* call(conn, put("b", "k", "before")), "RpbPutResp")

        yield* proxy.stop
        for (const request of [get("b", "k"), put("b", "k", "during")]) {
          const failed = expectTag(yield* call(conn, request), "Error")
          assert.match(failed.errmsg, /^KV storage \(postgres\) unavailable/)
        }
        const listing = yield* call(conn, { _tag: "RpbListKeysReq", bucket: enc("b") })
        expectTag(listing, "Error")

        yield* proxy.start
        const after = expectTag(yield* call(conn, get("b", "k")), "RpbGetResp")
        assert.strictEqual(dec(after.content?.[0]?.value), "before")
        expectTag(yield* call(conn, put("b", "k", "after")), "RpbPutResp")
      }),
    60_000
  )

  it.scopedLive(
    "basho-riak-client during an outage: an error for the request, the value again after it",
    () =>
      Effect.gen(function*() {
        const proxy = yield* makeProxy(yield* freshDatabase)
        yield* proxy.start
        const server = yield* startPgServer(proxy.url, { connectTimeout: "1 second", requestTimeout: "2 seconds" })
        const client = yield* riakClient(server.port)
        yield* promised((cb) => client.storeValue({ bucket: "b", key: "k", value: "before" }, cb))
        yield* proxy.stop
        const failed = yield* Effect.flip(promised((cb) => client.fetchValue({ bucket: "b", key: "k" }, cb)))
        assert.match(failed.message, /KV storage \(postgres\) unavailable/)
        yield* proxy.start
        const fetched = yield* promised<FetchResult>((cb) => client.fetchValue({ bucket: "b", key: "k" }, cb))
        assert.strictEqual(fetched.values[0]!.value.toString("utf8"), "before")
      }),
    60_000
  )
})
