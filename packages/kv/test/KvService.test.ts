import { assert, describe, it } from "@effect/vitest"
import { EmbeddedBackend, KvBackend, KvMessages, KvService, KvStore } from "@warren/kv"
import type { PbService } from "@warren/pb"
import { PbServer, Security, ServiceRegistry } from "@warren/pb"
import { Context, Effect, Either, Layer, Option } from "effect"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import type { Reply } from "./support/pbClient.js"
import { call, callStream, connect, connectSecure, decodeReply } from "./support/pbClient.js"
import { servicesLayer, startServer } from "./support/server.js"

import { dec, delReq, enc, errorText, expectTag, getReq, putReq, raw, setup } from "./support/requests.js"

describe("KvService over the PB server", () => {
  it.scopedLive("a missing key is a code-only RpbGetResp", () =>
    Effect.gen(function*() {
      const { conn } = yield* setup
      const frame = yield* raw(conn, getReq("b", "missing"))
      assert.strictEqual(frame.code, 10)
      assert.strictEqual(frame.body.length, 0)
    }))

  it.scopedLive("put then get returns content, metadata and vclock", () =>
    Effect.gen(function*() {
      const { conn } = yield* setup
      const before = Math.floor(Date.now() / 1000)
      const putFrame = yield* raw(conn, {
        _tag: "RpbPutReq",
        bucket: enc("b"),
        key: enc("k"),
        content: {
          value: enc("hello"),
          content_type: enc("text/plain"),
          charset: enc("utf-8"),
          content_encoding: enc("identity"),
          usermeta: [{ key: enc("who"), value: enc("me") }],
          indexes: [{ key: enc("age_int"), value: enc("42") }],
          links: [{ bucket: enc("b"), key: enc("other"), tag: enc("friend") }]
        },
        w: 3,
        dw: 2,
        pw: 1,
        timeout: 1000,
        n_val: 3,
        sloppy_quorum: true
      })
      assert.deepStrictEqual([putFrame.code, putFrame.body.length], [12, 0])
      const got = expectTag(yield* call(conn, getReq("b", "k", { r: 2, pr: 1, notfound_ok: true })), "RpbGetResp")
      assert.strictEqual(got.content?.length, 1)
      const content = got.content![0]!
      assert.strictEqual(dec(content.value), "hello")
      assert.strictEqual(dec(content.content_type), "text/plain")
      assert.strictEqual(dec(content.charset), "utf-8")
      assert.strictEqual(dec(content.content_encoding), "identity")
      assert.strictEqual(dec(content.usermeta?.[0]?.value), "me")
      assert.strictEqual(dec(content.indexes?.[0]?.value), "42")
      assert.strictEqual(dec(content.links?.[0]?.tag), "friend")
      assert.isAtLeast(content.last_mod ?? 0, before)
      assert.isAtLeast(content.last_mod_usecs ?? -1, 0)
      assert.isAbove(content.vtag?.length ?? 0, 0)
      assert.isAbove(got.vclock?.length ?? 0, 0)
    }))

  it.scopedLive("a put without key gets a generated key back", () =>
    Effect.gen(function*() {
      const { conn } = yield* setup
      const put = expectTag(yield* call(conn, putReq("b", undefined, "v")), "RpbPutResp")
      const key = dec(put.key)
      assert.isDefined(key)
      assert.deepStrictEqual(put.content ?? [], [])
      const got = expectTag(yield* call(conn, getReq("b", key!)), "RpbGetResp")
      assert.strictEqual(dec(got.content?.[0]?.value), "v")
      // With return_body the generated key comes with the body.
      const withBody = expectTag(yield* call(conn, putReq("b", undefined, "w", { return_body: true })), "RpbPutResp")
      assert.isDefined(withBody.key)
      assert.strictEqual(dec(withBody.content?.[0]?.value), "w")
    }))

  it.scopedLive("return_body, return_head and head", () =>
    Effect.gen(function*() {
      const { conn } = yield* setup
      const body = expectTag(
        yield* call(
          conn,
          putReq("b", "k", "value", {
            return_body: true,
            content: { value: enc("value"), content_type: enc("text/plain") }
          })
        ),
        "RpbPutResp"
      )
      assert.strictEqual(dec(body.content?.[0]?.value), "value")
      assert.isAbove(body.vclock?.length ?? 0, 0)
      assert.isUndefined(body.key)

      const head = expectTag(yield* call(conn, putReq("b", "k", "value2", { return_head: true })), "RpbPutResp")
      assert.strictEqual(head.content?.[0]?.value.length, 0)
      assert.isAbove(head.vclock?.length ?? 0, 0)

      yield* call(conn, {
        _tag: "RpbPutReq",
        bucket: enc("b"),
        key: enc("k"),
        content: { value: enc("value3"), content_type: enc("application/json") }
      })
      const got = expectTag(yield* call(conn, getReq("b", "k", { head: true })), "RpbGetResp")
      assert.strictEqual(got.content?.[0]?.value.length, 0)
      assert.strictEqual(dec(got.content?.[0]?.content_type), "application/json")
      assert.isAbove(got.vclock?.length ?? 0, 0)
    }))

  it.scopedLive("if_none_match fails with match_found and the connection stays usable", () =>
    Effect.gen(function*() {
      const { conn } = yield* setup
      expectTag(yield* call(conn, putReq("b", "k", "1", { if_none_match: true })), "RpbPutResp")
      const error = expectTag(yield* call(conn, putReq("b", "k", "2", { if_none_match: true })), "Error")
      assert.deepStrictEqual([error.errmsg, error.errcode], ["match_found", 0])
      const got = expectTag(yield* call(conn, getReq("b", "k")), "RpbGetResp")
      assert.strictEqual(dec(got.content?.[0]?.value), "1")
    }))

  it.scopedLive("if_not_modified: notfound, modified, then success with the current vclock", () =>
    Effect.gen(function*() {
      const { conn } = yield* setup
      assert.strictEqual(errorText(yield* call(conn, putReq("b", "k", "x", { if_not_modified: true }))), "notfound")
      const first = expectTag(yield* call(conn, putReq("b", "k", "1", { return_head: true })), "RpbPutResp")
      const second = expectTag(yield* call(conn, putReq("b", "k", "2", { return_head: true })), "RpbPutResp")
      assert.strictEqual(
        errorText(yield* call(conn, putReq("b", "k", "3", { if_not_modified: true, vclock: first.vclock! }))),
        "modified"
      )
      assert.strictEqual(errorText(yield* call(conn, putReq("b", "k", "3", { if_not_modified: true }))), "modified")
      expectTag(
        yield* call(conn, putReq("b", "k", "3", { if_not_modified: true, vclock: second.vclock! })),
        "RpbPutResp"
      )
      const got = expectTag(yield* call(conn, getReq("b", "k")), "RpbGetResp")
      assert.strictEqual(dec(got.content?.[0]?.value), "3")
    }))

  it.scopedLive("get with if_modified replies unchanged while the vclock matches", () =>
    Effect.gen(function*() {
      const { conn } = yield* setup
      const put = expectTag(yield* call(conn, putReq("b", "k", "1", { return_head: true })), "RpbPutResp")
      const same = expectTag(yield* call(conn, getReq("b", "k", { if_modified: put.vclock! })), "RpbGetResp")
      assert.isTrue(same.unchanged)
      assert.deepStrictEqual(same.content ?? [], [])
      yield* call(conn, putReq("b", "k", "2"))
      const changed = expectTag(yield* call(conn, getReq("b", "k", { if_modified: put.vclock! })), "RpbGetResp")
      assert.isUndefined(changed.unchanged)
      assert.strictEqual(dec(changed.content?.[0]?.value), "2")
    }))

  it.scopedLive("delete of a missing key succeeds with a code-only 14; delete removes", () =>
    Effect.gen(function*() {
      const { conn } = yield* setup
      const missing = yield* raw(conn, delReq("b", "nope"))
      assert.deepStrictEqual([missing.code, missing.body.length], [14, 0])
      yield* call(conn, putReq("b", "k", "v"))
      expectTag(yield* call(conn, delReq("b", "k", { rw: 2, vclock: enc("whatever") })), "RpbDelResp")
      const got = yield* raw(conn, getReq("b", "k"))
      assert.deepStrictEqual([got.code, got.body.length], [10, 0])
    }))

  it.scopedLive("zero-length bucket, key and type get riak_kv's errors", () =>
    Effect.gen(function*() {
      const { conn } = yield* setup
      assert.strictEqual(errorText(yield* call(conn, getReq("", "k"))), "Bucket cannot be zero-length")
      assert.strictEqual(errorText(yield* call(conn, getReq("b", ""))), "Key cannot be zero-length")
      assert.strictEqual(
        errorText(yield* call(conn, getReq("b", "k", { type: enc("") }))),
        "Type cannot be zero-length"
      )
      assert.strictEqual(errorText(yield* call(conn, putReq("", "k", "v"))), "Bucket cannot be zero-length")
      assert.strictEqual(errorText(yield* call(conn, putReq("b", "", "v"))), "Key cannot be zero-length")
      assert.strictEqual(
        errorText(yield* call(conn, putReq("b", "k", "v", { type: enc("") }))),
        "Type cannot be zero-length"
      )
      expectTag(yield* call(conn, getReq("b", "k")), "RpbGetResp")
    }))

  it.scopedLive("bucket types are separate namespaces; 'default' is the absent type", () =>
    Effect.gen(function*() {
      const { conn } = yield* setup
      yield* call(conn, putReq("b", "k", "plain"))
      yield* call(conn, putReq("b", "k", "typed", { type: enc("t") }))
      const viaDefault = expectTag(yield* call(conn, getReq("b", "k", { type: enc("default") })), "RpbGetResp")
      assert.strictEqual(dec(viaDefault.content?.[0]?.value), "plain")
      const typed = expectTag(yield* call(conn, getReq("b", "k", { type: enc("t") })), "RpbGetResp")
      assert.strictEqual(dec(typed.content?.[0]?.value), "typed")
      const keys = yield* callStream(conn, { _tag: "RpbListKeysReq", bucket: enc("b"), type: enc("t") })
      assert.deepStrictEqual(keys.map((r) => expectTag(r, "RpbListKeysResp").keys?.map(dec)), [["k"]])
    }))

  it.scopedLive("list keys streams bounded batches; the last one carries done", () =>
    Effect.gen(function*() {
      const { conn, server } = yield* setup
      for (let i = 0; i < 2500; i++) {
        yield* server.store.put({ bucket: enc("big") }, enc(`key-${i}`), { value: enc("") })
      }
      const frames: Array<{ code: number; bodyLength: number; reply: Reply }> = []
      yield* conn.send(
        Either.getOrThrow(KvMessages.codec.encode({ _tag: "RpbListKeysReq", bucket: enc("big"), timeout: 60_000 }))
      )
      for (;;) {
        const frame = yield* conn.next
        const reply = decodeReply(frame)
        frames.push({ code: frame.code, bodyLength: frame.body.length, reply })
        if (reply._tag !== "RpbListKeysResp" || reply.done === true) break
      }
      assert.deepStrictEqual(frames.map((f) => f.code), [18, 18, 18])
      const replies = frames.map((f) => expectTag(f.reply, "RpbListKeysResp"))
      assert.deepStrictEqual(replies.map((r) => r.keys?.length), [1000, 1000, 500])
      assert.deepStrictEqual(replies.map((r) => r.done === true), [false, false, true])
      assert.isTrue(frames.every((f) => f.bodyLength > 0))
      assert.strictEqual(new Set(replies.flatMap((r) => (r.keys ?? []).map(dec))).size, 2500)
      // The connection is out of streaming mode again.
      expectTag(yield* call(conn, getReq("big", "key-1")), "RpbGetResp")
    }))

  it.scopedLive("list keys of an empty bucket is one done frame with a body", () =>
    Effect.gen(function*() {
      const { conn } = yield* setup
      const frame = yield* raw(conn, { _tag: "RpbListKeysReq", bucket: enc("empty") })
      assert.strictEqual(frame.code, 18)
      assert.isAbove(frame.body.length, 0)
      const reply = expectTag(decodeReply(frame), "RpbListKeysResp")
      assert.isTrue(reply.done)
      assert.deepStrictEqual(reply.keys ?? [], [])
    }))

  it.scopedLive("list buckets: one reply, or a stream when asked", () =>
    Effect.gen(function*() {
      const { conn } = yield* setup
      const empty = yield* raw(conn, { _tag: "RpbListBucketsReq" })
      assert.deepStrictEqual([empty.code, empty.body.length], [16, 0])
      for (const b of ["b1", "b2", "b3"]) yield* call(conn, putReq(b, "k", "v"))
      yield* call(conn, putReq("tb", "k", "v", { type: enc("t") }))

      const single = expectTag(yield* call(conn, { _tag: "RpbListBucketsReq" }), "RpbListBucketsResp")
      assert.deepStrictEqual(single.buckets?.map(dec).sort(), ["b1", "b2", "b3"])
      assert.isUndefined(single.done)

      const streamed = yield* callStream(conn, { _tag: "RpbListBucketsReq", stream: true })
      const frames = streamed.map((r) => expectTag(r, "RpbListBucketsResp"))
      assert.strictEqual(frames.at(-1)?.done, true)
      assert.deepStrictEqual(frames.flatMap((f) => f.buckets ?? []).map(dec).sort(), ["b1", "b2", "b3"])

      const typed = yield* callStream(conn, { _tag: "RpbListBucketsReq", stream: true, type: enc("t") })
      assert.deepStrictEqual(typed.map((r) => expectTag(r, "RpbListBucketsResp").buckets?.map(dec)), [["tb"]])
      const none = yield* callStream(conn, { _tag: "RpbListBucketsReq", stream: true, type: enc("none") })
      assert.deepStrictEqual(
        none.map((r) => expectTag(r, "RpbListBucketsResp")).map((r) => [r.buckets ?? [], r.done]),
        [[[], true]]
      )
    }))

  it.scopedLive("a reply code sent as a request gets riak's crash text and the connection closes; a bad body is a decoding error", () =>
    Effect.gen(function*() {
      const { server, conn } = yield* setup
      yield* conn.send(Uint8Array.of(9, 0xff))
      assert.match(errorText(decodeReply(yield* conn.next)), /^Message decoding error: /)
      expectTag(yield* call(conn, getReq("b", "k")), "RpbGetResp")
      for (const code of [10, 12, 14, 16, 18]) {
        const other = yield* connect(server.port)
        yield* other.send(Uint8Array.of(code))
        assert.strictEqual(errorText(decodeReply(yield* other.next)), "Error processing incoming message")
        yield* other.closed
      }
      // the server and the first connection go on
      expectTag(yield* call(conn, getReq("b", "k")), "RpbGetResp")
    }))

  it.scopedLive("a put beyond the memory bound gets an error; stored objects stay", () =>
    Effect.gen(function*() {
      const server = yield* startServer({ maxBytes: 4096 })
      const conn = yield* connect(server.port)
      expectTag(yield* call(conn, putReq("b", "small", "x".repeat(1000))), "RpbPutResp")
      const error = errorText(yield* call(conn, putReq("b", "big", "x".repeat(5000))))
      assert.match(error, /^Memory limit exceeded/)
      const got = expectTag(yield* call(conn, getReq("b", "small")), "RpbGetResp")
      assert.strictEqual(got.content?.[0]?.value.length, 1000)
    }))

  it.scopedLive("a storage failure is the request's RpbErrorResp; the connection and the server stay up", () =>
    Effect.gen(function*() {
      const dir = yield* Effect.acquireRelease(
        Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "warren-kv-svc-"))),
        (d) => Effect.sync(() => fs.rmSync(d, { recursive: true, force: true }))
      )
      // A real embedded backend whose scope is already closed: its log refuses writes.
      const backend = yield* Effect.scoped(EmbeddedBackend.make({ dataFile: path.join(dir, "kv.snapshot") }))
      const services = KvService.layer.pipe(
        Layer.provide(KvStore.layerFromBackend),
        Layer.provide(Layer.succeed(KvBackend.KvBackend, backend))
      )
      const context = yield* Layer.build(
        PbServer.layer({ port: 0 }).pipe(Layer.merge(services), Layer.provideMerge(ServiceRegistry.layer))
      )
      const conn = yield* connect(Context.get(context, PbServer.PbServer).address.port)
      const failed = yield* call(conn, putReq("b", "k", "v"))
      assert.strictEqual(failed._tag, "Error")
      if (failed._tag === "Error") {
        assert.strictEqual(failed.errmsg, "KV storage (embedded) closed: the store is closed")
      }
      // The refused put changed nothing: the key is not found, and deleting it needs no log record.
      const got = expectTag(yield* call(conn, getReq("b", "k")), "RpbGetResp")
      assert.strictEqual(got.content?.length ?? 0, 0)
      assert.isUndefined(got.vclock)
      assert.strictEqual((yield* call(conn, delReq("b", "k")))._tag, "RpbDelResp")
    }))

  it.scopedLive("objects survive a server restart through the snapshot file", () =>
    Effect.gen(function*() {
      const dir = yield* Effect.acquireRelease(
        Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "warren-kv-svc-"))),
        (d) => Effect.sync(() => fs.rmSync(d, { recursive: true, force: true }))
      )
      const dataFile = path.join(dir, "kv.snapshot")
      const vclock = yield* Effect.scoped(Effect.gen(function*() {
        const server = yield* startServer({ dataFile })
        const conn = yield* connect(server.port)
        const put = expectTag(yield* call(conn, putReq("b", "k", "persisted", { return_head: true })), "RpbPutResp")
        return put.vclock!
      }))
      const server = yield* startServer({ dataFile })
      const conn = yield* connect(server.port)
      const got = expectTag(yield* call(conn, getReq("b", "k")), "RpbGetResp")
      assert.strictEqual(dec(got.content?.[0]?.value), "persisted")
      assert.deepStrictEqual(Buffer.from(got.vclock!), Buffer.from(vclock))
    }))
})

/** A value that names its writer and write and can be checked byte for byte (a torn value fails the check). */
const makeValue = (writer: number, seq: number): Uint8Array => {
  const header = enc(`${writer}:${seq}:`)
  const length = 500 + ((writer * 7919 + seq * 104729) % 6000)
  const out = new Uint8Array(header.length + length)
  out.set(header, 0)
  for (let j = 0; j < length; j++) out[header.length + j] = (writer * 31 + seq * 17 + j) & 0xff
  return out
}

const parseValue = (value: Uint8Array): { writer: number; seq: number } => {
  const text = new TextDecoder("latin1").decode(value.subarray(0, 24))
  const match = /^(\d+):(\d+):/.exec(text)
  assert.isNotNull(match, "value has no header")
  const writer = Number(match![1])
  const seq = Number(match![2])
  assert.deepStrictEqual(Buffer.from(value), Buffer.from(makeValue(writer, seq)), `torn value ${writer}:${seq}`)
  return { writer, seq }
}

describe("KvService under concurrency", () => {
  it.scopedLive("100 connections doing mixed puts and gets lose and tear nothing", () =>
    Effect.gen(function*() {
      const server = yield* startServer()
      const connections = 100
      const rounds = 30
      const sharedKeys = 5
      yield* Effect.forEach(
        Array.from({ length: connections }, (_, c) => c),
        (c) =>
          Effect.gen(function*() {
            const conn = yield* connect(server.port)
            for (let i = 0; i < rounds; i++) {
              const own = makeValue(c, i)
              expectTag(
                yield* call(conn, {
                  _tag: "RpbPutReq",
                  bucket: enc("own"),
                  key: enc(`k${c}`),
                  content: { value: own }
                }),
                "RpbPutResp"
              )
              const mine = expectTag(yield* call(conn, getReq("own", `k${c}`)), "RpbGetResp")
              assert.deepStrictEqual(parseValue(mine.content![0]!.value), { writer: c, seq: i })

              const shared = `s${(c + i) % sharedKeys}`
              expectTag(
                yield* call(conn, {
                  _tag: "RpbPutReq",
                  bucket: enc("shared"),
                  key: enc(shared),
                  content: { value: makeValue(c, i) },
                  return_body: i % 2 === 0
                }),
                "RpbPutResp"
              )
              const read = expectTag(yield* call(conn, getReq("shared", `s${i % sharedKeys}`)), "RpbGetResp")
              if ((read.content ?? []).length > 0) parseValue(read.content![0]!.value)
            }
          }).pipe(Effect.scoped),
        { concurrency: "unbounded", discard: true }
      )
      const check = yield* connect(server.port)
      for (let c = 0; c < connections; c++) {
        const got = expectTag(yield* call(check, getReq("own", `k${c}`)), "RpbGetResp")
        assert.deepStrictEqual(parseValue(got.content![0]!.value), { writer: c, seq: rounds - 1 })
      }
      for (let s = 0; s < sharedKeys; s++) {
        const got = expectTag(yield* call(check, getReq("shared", `s${s}`)), "RpbGetResp")
        parseValue(got.content![0]!.value)
      }
      const keys = yield* callStream(check, { _tag: "RpbListKeysReq", bucket: enc("own") })
      assert.strictEqual(keys.flatMap((r) => expectTag(r, "RpbListKeysResp").keys ?? []).length, connections)
      assert.strictEqual((yield* server.store.usage).objects, connections + sharedKeys)
    }), 120_000)
})

/** A throwaway self-signed certificate (openssl), removed with the scope. */
const selfSigned = Effect.acquireRelease(
  Effect.sync(() => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "warren-kv-tls-"))
    const key = path.join(dir, "key.pem")
    const cert = path.join(dir, "cert.pem")
    execFileSync("openssl", [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-keyout",
      key,
      "-out",
      cert,
      "-days",
      "1",
      "-subj",
      "/CN=localhost"
    ], { stdio: "ignore" })
    return { dir, key: fs.readFileSync(key, "utf8"), cert: fs.readFileSync(cert, "utf8") }
  }),
  ({ dir }) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

describe("KvService with security on", () => {
  it.scopedLive("asks for riak_kv.* / riak_core.*_bucket permissions on type/bucket and is denied without them", () =>
    Effect.gen(function*() {
      const { cert, key } = yield* selfSigned
      const checks: Array<{ user: string; check: PbService.PermissionCheck }> = []
      const allowed = new Set(["riak_kv.get", "riak_kv.list_keys", "riak_core.get_bucket"])
      const security = Layer.mergeAll(
        Layer.succeed(Security.Authenticator, {
          authenticate: (request) => Effect.succeed(request.user === "reader" && request.password === "secret")
        }),
        Layer.succeed(Security.Authorizer, {
          check: (user, check) =>
            Effect.sync(() => {
              checks.push({ user, check })
              return allowed.has(check.permission)
            })
        })
      )
      const context = yield* Layer.build(
        PbServer.layerSecure({ port: 0, security: { tls: { key, cert } } }).pipe(
          Layer.merge(servicesLayer()),
          Layer.provideMerge(ServiceRegistry.layer),
          Layer.provide(security)
        )
      )
      const port = Context.get(context, PbServer.PbServer).address.port
      const store = Context.get(context, KvStore.KvStore)
      yield* store.put({ bucket: enc("b") }, enc("k"), { value: enc("v") })

      const conn = yield* connectSecure(port, "reader", "secret")
      const got = expectTag(yield* call(conn, getReq("b", "k")), "RpbGetResp")
      assert.strictEqual(dec(got.content?.[0]?.value), "v")
      assert.strictEqual(
        errorText(yield* call(conn, putReq("b", "k", "w"))),
        "Permission denied: User 'reader' does not have 'riak_kv.put' on default/b"
      )
      assert.strictEqual(
        errorText(yield* call(conn, delReq("b", "k", { type: enc("t") }))),
        "Permission denied: User 'reader' does not have 'riak_kv.delete' on t/b"
      )
      assert.strictEqual(
        errorText(yield* call(conn, { _tag: "RpbListBucketsReq", stream: true })),
        "Permission denied: User 'reader' does not have 'riak_kv.list_buckets' on default"
      )
      const keys = yield* callStream(conn, { _tag: "RpbListKeysReq", bucket: enc("b") })
      assert.deepStrictEqual(keys.flatMap((r) => expectTag(r, "RpbListKeysResp").keys ?? []).map(dec), ["k"])
      expectTag(yield* call(conn, { _tag: "RpbGetBucketReq", bucket: enc("b") }), "RpbGetBucketResp")
      assert.strictEqual(
        errorText(yield* call(conn, { _tag: "RpbSetBucketReq", bucket: enc("b"), props: { allow_mult: true } })),
        "Permission denied: User 'reader' does not have 'riak_core.set_bucket' on default/b"
      )
      assert.strictEqual(
        errorText(yield* call(conn, { _tag: "RpbResetBucketReq", bucket: enc("b"), type: enc("t") })),
        "Permission denied: User 'reader' does not have 'riak_core.set_bucket' on t/b"
      )
      // The denied writes changed nothing.
      assert.strictEqual(
        dec(Option.getOrThrow(yield* store.get({ bucket: enc("b"), key: enc("k") })).content.value),
        "v"
      )

      const rendered = checks.map(({ check, user }) => {
        const target = check.target
        const text = (v: string | Uint8Array) => (typeof v === "string" ? v : dec(v))
        return `${user} ${check.permission} ${
          target === undefined ? "-" : typeof target === "string" || target instanceof Uint8Array
            ? text(target)
            : `${text(target.type)}/${text(target.bucket)}`
        }`
      })
      assert.deepStrictEqual(rendered, [
        "reader riak_kv.get default/b",
        "reader riak_kv.put default/b",
        "reader riak_kv.delete t/b",
        "reader riak_kv.list_buckets default",
        "reader riak_kv.list_keys default/b",
        "reader riak_core.get_bucket default/b",
        "reader riak_core.set_bucket default/b",
        "reader riak_core.set_bucket t/b"
      ])
      assert.isFalse((yield* store.getBucketProps({ bucket: enc("b") })).allowMult, "the denied set changed nothing")
    }))
})
