/**
 * The stock Riak PB client for Node (basho-riak-client 2.4.0) against the KV service on the real PB server.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { type BucketPropsResult, type FetchResult, promised, riakClient } from "./support/riakClient.js"
import { startServer } from "./support/server.js"

describe("basho-riak-client 2.4.0", () => {
  it.scopedLive("StoreValue, FetchValue, DeleteValue, ListBuckets and ListKeys", () =>
    Effect.gen(function*() {
      const server = yield* startServer()
      const client = yield* riakClient(server.port)
      assert.isTrue(yield* promised<boolean>((cb) => client.ping(cb)))

      yield* promised((cb) => client.storeValue({ bucket: "users", key: "alice", value: { name: "Alice" } }, cb))
      yield* promised((cb) => client.storeValue({ bucket: "users", key: "bob", value: "plain text" }, cb))
      yield* promised((cb) =>
        client.storeValue({ bucketType: "other", bucket: "things", key: "t1", value: "typed" }, cb)
      )
      const generated = yield* promised<{ readonly generatedKey?: string }>((cb) =>
        client.storeValue({ bucket: "users", value: "anonymous" }, cb)
      )
      assert.isString(generated.generatedKey)

      const alice = yield* promised<FetchResult>((cb) => client.fetchValue({ bucket: "users", key: "alice" }, cb))
      assert.isFalse(alice.isNotFound)
      assert.strictEqual(alice.values.length, 1)
      assert.deepStrictEqual(JSON.parse(alice.values[0]!.value.toString("utf8")), { name: "Alice" })
      assert.strictEqual(alice.values[0]!.contentType, "application/json")

      const typed = yield* promised<FetchResult>((cb) =>
        client.fetchValue({ bucketType: "other", bucket: "things", key: "t1" }, cb)
      )
      assert.strictEqual(typed.values[0]!.value.toString("utf8"), "typed")

      const anonymous = yield* promised<FetchResult>((cb) =>
        client.fetchValue({ bucket: "users", key: generated.generatedKey }, cb)
      )
      assert.strictEqual(anonymous.values[0]!.value.toString("utf8"), "anonymous")

      const buckets = yield* promised<{ readonly buckets: ReadonlyArray<string> }>((cb) =>
        client.listBuckets({ stream: false }, cb)
      )
      assert.deepStrictEqual([...buckets.buckets].sort(), ["users"])

      const keys = yield* promised<{ readonly keys: ReadonlyArray<string> }>((cb) =>
        client.listKeys({ bucket: "users", stream: false }, cb)
      )
      assert.deepStrictEqual([...keys.keys].sort(), ["alice", "bob", generated.generatedKey!].sort())

      assert.isTrue(yield* promised<boolean>((cb) => client.deleteValue({ bucket: "users", key: "bob" }, cb)))
      assert.isTrue(yield* promised<boolean>((cb) => client.deleteValue({ bucket: "users", key: "bob" }, cb)))
      const bob = yield* promised<FetchResult>((cb) => client.fetchValue({ bucket: "users", key: "bob" }, cb))
      assert.isTrue(bob.isNotFound)
    }))

  it.scopedLive("conditional stores report Riak's errors to the client", () =>
    Effect.gen(function*() {
      const server = yield* startServer()
      const client = yield* riakClient(server.port)
      yield* promised((cb) => client.storeValue({ bucket: "b", key: "k", value: "1", ifNoneMatch: true }, cb))
      const again = yield* Effect.flip(
        promised((cb) => client.storeValue({ bucket: "b", key: "k", value: "2", ifNoneMatch: true }, cb))
      )
      assert.match(again.message, /match_found/)
    }))

  it.scopedLive("FetchBucketProps, StoreBucketProps and ResetBucketProps round-trip; siblings reach the client", () =>
    Effect.gen(function*() {
      const server = yield* startServer()
      const client = yield* riakClient(server.port)
      const fetchProps = (options: Record<string, unknown>) =>
        promised<BucketPropsResult>((cb) => client.fetchBucketProps(options, cb))
      const initial = yield* fetchProps({ bucket: "b" })
      assert.deepStrictEqual(
        [initial.nVal, initial.allowMult, initial.lastWriteWins, initial.notFoundOk, initial.precommit.length],
        [3, false, false, true, 0]
      )
      assert.strictEqual(initial.r, 4294967293, "quorum, in riak_pb's encoding")
      assert.deepStrictEqual(initial.chashKeyfun, { mod: "riak_core_util", fun: "chash_std_keyfun" })
      assert.isTrue((yield* fetchProps({ bucketType: "typed", bucket: "b" })).allowMult)

      assert.isTrue(
        yield* promised<boolean>((cb) => client.storeBucketProps({ bucket: "b", allowMult: true, nVal: 2 }, cb))
      )
      const stored = yield* fetchProps({ bucket: "b" })
      assert.deepStrictEqual([stored.allowMult, stored.nVal], [true, 2])
      const refused = yield* Effect.flip(
        promised((cb) => client.storeBucketProps({ bucket: "b", lastWriteWins: true }, cb))
      )
      assert.match(refused.message, /Invalid bucket property last_write_wins/)
      const hooks = yield* Effect.flip(
        promised((cb) => client.storeBucketProps({ bucket: "b", precommit: [{ mod: "m", fun: "f" }] }, cb))
      )
      assert.match(hooks.message, /precommit: not supported/)

      yield* promised((cb) => client.storeValue({ bucket: "b", key: "k", value: "1" }, cb))
      const both = yield* promised<{ readonly values: ReadonlyArray<{ readonly value: Buffer }> }>((cb) =>
        client.storeValue({ bucket: "b", key: "k", value: "2", returnBody: true }, cb)
      )
      assert.deepStrictEqual(both.values.map((v) => v.value.toString("utf8")), ["2", "1"])
      const fetched = yield* promised<FetchResult>((cb) => client.fetchValue({ bucket: "b", key: "k" }, cb))
      assert.strictEqual(fetched.values.length, 2)
      // The client's conflict resolution hook picks one; storing it with the vclock resolves the key.
      const picked = yield* promised<FetchResult>((cb) =>
        client.fetchValue({
          bucket: "b",
          key: "k",
          conflictResolver: (objects: ReadonlyArray<{ readonly value: Buffer }>) =>
            objects.find((o) => o.value.toString("utf8") === "1")
        }, cb)
      )
      assert.strictEqual(picked.values.length, 1)
      yield* promised((cb) => client.storeValue({ bucket: "b", key: "k", value: picked.values[0] }, cb))
      const resolved = yield* promised<FetchResult>((cb) => client.fetchValue({ bucket: "b", key: "k" }, cb))
      assert.deepStrictEqual(resolved.values.map((v) => v.value.toString("utf8")), ["1"])

      assert.isTrue(yield* promised<boolean>((cb) => client.resetBucketProps({ bucket: "b" }, cb)))
      assert.isFalse((yield* fetchProps({ bucket: "b" })).allowMult)
    }))

  it.scopedLive("ListKeys of a large bucket arrives whole over many frames", () =>
    Effect.gen(function*() {
      const server = yield* startServer()
      const enc = (s: string) => new TextEncoder().encode(s)
      for (let i = 0; i < 5000; i++) yield* server.store.put({ bucket: enc("big") }, enc(`k${i}`), { value: enc("") })
      const client = yield* riakClient(server.port)
      const keys = yield* promised<{ readonly keys: ReadonlyArray<string> }>((cb) =>
        client.listKeys({ bucket: "big", stream: false }, cb)
      )
      assert.strictEqual(new Set(keys.keys).size, 5000)
    }))
})
