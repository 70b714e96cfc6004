/**
 * Siblings and bucket properties at the edges of the store: the PB frames (codes 19..22, 29..30, siblings as
 * several `content` entries) and the embedded backend's files (log replay and snapshot). Their semantics on
 * every backend are the conformance suite's (test/support/conformance.ts); through two servers on one
 * PostgreSQL, PgCluster.test.ts; with basho-riak-client, RiakClient.test.ts.
 */
import { assert, describe, it } from "@effect/vitest"
import { type KvMessages, KvStore } from "@warren/kv"
import { Effect, Exit, Option, Scope } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as snapshotFile from "../src/internal/snapshot.js"
import * as wal from "../src/internal/wal.js"
import { call, decodeReply, type Reply } from "./support/pbClient.js"

import { dec, delReq, enc, errorText, expectTag, getReq, putReq, raw, setup } from "./support/requests.js"

const tempDir = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "warren-kv-siblings-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

/** The store on `dataFile` in a scope of its own, closed by the returned effect (a clean stop). */
const open = (options: KvStore.Options) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const store = yield* Scope.extend(KvStore.make(options), scope)
    return { store, close: Scope.close(scope, Exit.void) }
  })

const segments = (dataFile: string) => Effect.promise(() => wal.listSegments(dataFile))

describe("KvService: bucket properties and siblings over PB", () => {
  it.scopedLive("bucket properties (19..22, 29..30) and siblings over PB", () =>
    Effect.gen(function*() {
      const { conn } = yield* setup
      const getBucket = (bucket: string): KvMessages.KvRequest => ({ _tag: "RpbGetBucketReq", bucket: enc(bucket) })
      const props = (reply: Reply) => expectTag(reply, "RpbGetBucketResp").props
      assert.deepStrictEqual(
        [props(yield* call(conn, getBucket("s"))).allow_mult, props(yield* call(conn, getBucket("s"))).n_val],
        [false, 3]
      )
      const set = yield* raw(conn, { _tag: "RpbSetBucketReq", bucket: enc("s"), props: { allow_mult: true } })
      assert.deepStrictEqual([set.code, set.body.length], [22, 0])
      assert.isTrue(props(yield* call(conn, getBucket("s"))).allow_mult)
      assert.strictEqual(
        errorText(yield* call(conn, { _tag: "RpbSetBucketReq", bucket: enc("s"), props: { datatype: enc("map") } })),
        "Invalid bucket property datatype: not supported by warren"
      )
      assert.strictEqual(
        errorText(yield* call(conn, { _tag: "RpbGetBucketReq", bucket: enc("") })),
        "Bucket cannot be zero-length"
      )

      const first = expectTag(yield* call(conn, putReq("s", "k", "1", { return_body: true })), "RpbPutResp")
      const second = expectTag(
        yield* call(conn, putReq("s", "k", "2", { return_head: true, vclock: first.vclock! })),
        "RpbPutResp"
      )
      assert.strictEqual(second.content?.length, 1, "the put saw the first value: it replaces it")
      yield* call(conn, putReq("s", "k", "3", { vclock: first.vclock! }))
      const got = expectTag(yield* call(conn, getReq("s", "k")), "RpbGetResp")
      assert.deepStrictEqual(got.content?.map((c) => dec(c.value)), ["3", "2"])
      assert.notStrictEqual(dec(got.content?.[0]?.vtag), dec(got.content?.[1]?.vtag))
      const head = expectTag(yield* call(conn, getReq("s", "k", { head: true })), "RpbGetResp")
      assert.deepStrictEqual(head.content?.map((c) => c.value.length), [0, 0])
      // A delete with the vclock of the fetch removes both; the key is gone.
      expectTag(yield* call(conn, delReq("s", "k", { vclock: got.vclock! })), "RpbDelResp")
      assert.strictEqual(expectTag(yield* call(conn, getReq("s", "k")), "RpbGetResp").content?.length ?? 0, 0)

      const reset = yield* raw(conn, { _tag: "RpbResetBucketReq", bucket: enc("s") })
      assert.deepStrictEqual([reset.code, reset.body.length], [30, 0])
      assert.isFalse(props(yield* call(conn, getBucket("s"))).allow_mult)
      // 23..28 (MapReduce, 2i, search) stay unregistered.
      yield* conn.send(Uint8Array.of(23))
      assert.strictEqual(errorText(decodeReply(yield* conn.next)), "Unknown message code: 23")
    }))
})

describe("EmbeddedBackend: siblings and bucket properties on disk", () => {
  it.scopedLive("siblings and bucket properties survive a restart, from the log and from the snapshot", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const dataFile = path.join(dir, "kv")
      const first = yield* open({ dataFile })
      const multi = { bucket: enc("m") }
      yield* first.store.setBucketProps(multi, { allowMult: true, nVal: 2 })
      yield* first.store.setBucketProps({ bucket: enc("gone") }, { allowMult: true })
      yield* first.store.resetBucketProps({ bucket: enc("gone") })
      yield* first.store.put(multi, enc("k"), { value: enc("a") })
      const both = (yield* first.store.put(multi, enc("k"), { value: enc("b") })).object
      const siblingsOf = (store: KvStore.KvStore["Type"]) =>
        Effect.map(store.get({ bucket: enc("m"), key: enc("k") }), (o) => {
          const object = Option.getOrThrow(o)
          return {
            values: KvStore.contents(object).map((c) => dec(c.value)),
            vclock: Buffer.from(object.vclock).toString("hex")
          }
        })
      const expected = { values: ["b", "a"], vclock: Buffer.from(both.vclock).toString("hex") }
      const check = (store: KvStore.KvStore["Type"]) =>
        Effect.gen(function*() {
          assert.deepStrictEqual(yield* siblingsOf(store), expected)
          const props = yield* store.getBucketProps(multi)
          assert.deepStrictEqual([props.allowMult, props.nVal], [true, 2])
          assert.isFalse((yield* store.getBucketProps({ bucket: enc("gone") })).allowMult)
          // Still a sibling bucket: a blind put adds a third value.
          yield* store.put(multi, enc("k2"), { value: enc("1") })
          yield* store.put(multi, enc("k2"), { value: enc("2") })
          assert.strictEqual(
            KvStore.contents(Option.getOrThrow(yield* store.get({ bucket: enc("m"), key: enc("k2") }))).length,
            2
          )
        })

      // The acknowledged writes are in the log: a copy of the files taken now (no snapshot yet) replays them.
      const copy = path.join(dir, "copy")
      fs.mkdirSync(copy)
      assert.isFalse(fs.existsSync(dataFile))
      for (const segment of yield* segments(dataFile)) {
        fs.copyFileSync(segment.path, path.join(copy, path.basename(segment.path)))
      }
      const replayed = yield* open({ dataFile: path.join(copy, "kv") })
      yield* check(replayed.store)
      yield* replayed.close

      yield* first.close
      const reopened = yield* open({ dataFile })
      yield* check(reopened.store)
    }))

  it.scopedLive("files of the release before siblings load: objects with old vclocks resolve like one dot", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const dataFile = path.join(dir, "kv")
      // What the previous release wrote: vclocks `w`, 1, instance, counter; no siblings, no bucket properties.
      const legacy = (n: number) => Uint8Array.from([0x77, 1, 9, 9, 9, 9, 9, 9, 9, 9, 0, 0, 0, 0, 0, 0, 0, n])
      const entry = (key: string, n: number): snapshotFile.SnapshotEntry => ({
        type: enc("default"),
        bucket: enc("m"),
        key: enc(key),
        vclock: legacy(n),
        content: { value: enc(`${key}-old`), vtag: enc(`t${n}`), lastMod: 1, lastModUsecs: 0 }
      })
      yield* Effect.promise(() =>
        snapshotFile.write(dataFile, { serverId: new Uint8Array(8), sequence: 1, walSegment: 1 }, [entry("snap", 1)])
      )
      const segment = Buffer.concat([wal.magic, wal.encodeRecord({ _tag: "Put", entry: entry("logged", 2) })])
      fs.writeFileSync(wal.segmentPath(dataFile, 1), segment)

      const { store } = yield* open({ dataFile })
      const multi = { bucket: enc("m") }
      yield* store.setBucketProps(multi, { allowMult: true })
      for (const [key, n] of [["snap", 1], ["logged", 2]] as const) {
        const old = Option.getOrThrow(yield* store.get({ bucket: enc("m"), key: enc(key) }))
        assert.deepStrictEqual([dec(old.content.value), [...old.vclock]], [`${key}-old`, [...legacy(n)]])
        yield* store.put(multi, enc(key), { value: enc("blind") })
        yield* store.put(multi, enc(key), { value: enc("seen-old") }, undefined, legacy(n))
        const now = Option.getOrThrow(yield* store.get({ bucket: enc("m"), key: enc(key) }))
        assert.deepStrictEqual(KvStore.contents(now).map((c) => dec(c.value)), ["seen-old", "blind"])
      }
    }))
})
