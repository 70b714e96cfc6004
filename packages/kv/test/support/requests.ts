/**
 * Building KV requests and reading replies in tests that speak PB frames to a real server: the helpers the
 * KV service's test files share.
 */
import { assert } from "@effect/vitest"
import { KvMessages } from "@warren/kv"
import { Effect, Either } from "effect"
import { type Connection, connect, type Reply } from "./pbClient.js"
import { startServer } from "./server.js"

export const enc = (s: string): Uint8Array => new TextEncoder().encode(s)
export const dec = (
  b: Uint8Array | undefined
): string | undefined => (b === undefined ? undefined : new TextDecoder().decode(b))

export const getReq = (
  bucket: string,
  key: string,
  extra: Partial<KvMessages.Message<"RpbGetReq">> = {}
): KvMessages.KvRequest => ({
  _tag: "RpbGetReq",
  bucket: enc(bucket),
  key: enc(key),
  ...extra
})

export const putReq = (
  bucket: string,
  key: string | undefined,
  value: string,
  extra: Partial<KvMessages.Message<"RpbPutReq">> = {}
): KvMessages.KvRequest => ({
  _tag: "RpbPutReq",
  bucket: enc(bucket),
  ...(key === undefined ? {} : { key: enc(key) }),
  content: { value: enc(value) },
  ...extra
})

export const delReq = (
  bucket: string,
  key: string,
  extra: Partial<KvMessages.Message<"RpbDelReq">> = {}
): KvMessages.KvRequest => ({
  _tag: "RpbDelReq",
  bucket: enc(bucket),
  key: enc(key),
  ...extra
})

export const expectTag = <T extends Reply["_tag"]>(reply: Reply, tag: T): Extract<Reply, { _tag: T }> => {
  assert.strictEqual(reply._tag, tag, JSON.stringify(reply))
  return reply as Extract<Reply, { _tag: T }>
}

export const errorText = (reply: Reply): string => expectTag(reply, "Error").errmsg

/** A fresh server and one connection to it. */
export const setup = Effect.gen(function*() {
  const server = yield* startServer()
  const conn = yield* connect(server.port)
  return { server, conn }
})

/** Sends a raw payload and returns the raw next frame (to check code-only frames). */
export const raw = (conn: Connection, request: KvMessages.KvRequest) =>
  Effect.gen(function*() {
    yield* conn.send(Either.getOrThrow(KvMessages.codec.encode(request)))
    return yield* conn.next
  })
