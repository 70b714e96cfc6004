/**
 * A minimal Riak PB client over a real TCP socket for tests: writes frames (4-byte big-endian length, code byte,
 * body) and reads them back, reassembling frames split over reads.
 */
import { KvMessages } from "@warren/kv"
import { PbCodec, RiakPb } from "@warren/pb"
import { Effect, Either, Queue } from "effect"
import type { Scope } from "effect"
import * as net from "node:net"
import * as tls from "node:tls"

export interface Frame {
  readonly code: number
  readonly body: Uint8Array
}

export interface Connection {
  /** Writes one frame whose payload is the code byte followed by the body. */
  readonly send: (payload: Uint8Array) => Effect.Effect<void>
  /** Writes raw bytes (for split or merged frames). */
  readonly write: (bytes: Uint8Array) => Effect.Effect<void>
  /** The next frame from the server. */
  readonly next: Effect.Effect<Frame>
  /** Resolves when the server closes the connection. */
  readonly closed: Effect.Effect<void>
}

export const frame = (payload: Uint8Array): Buffer => {
  const out = Buffer.alloc(4 + payload.length)
  out.writeUInt32BE(payload.length, 0)
  out.set(payload, 4)
  return out
}

const openSocket = (port: number, host: string) =>
  Effect.acquireRelease(
    Effect.async<net.Socket, Error>((resume) => {
      const s = net.connect({ port, host })
      const onError = (e: Error) => resume(Effect.fail(e))
      s.once("error", onError)
      s.once("connect", () => {
        s.off("error", onError)
        resume(Effect.succeed(s))
      })
    }),
    (s) => Effect.sync(() => s.destroy())
  )

/** Frames from any socket (plain or TLS). */
const fromSocket = (socket: net.Socket): Effect.Effect<Connection> =>
  Effect.gen(function*() {
    const frames = yield* Queue.unbounded<Frame>()
    let buffer: Buffer = Buffer.alloc(0)
    socket.on("data", (chunk: Buffer) => {
      buffer = buffer.length === 0 ? chunk : Buffer.concat([buffer, chunk])
      while (buffer.length >= 4) {
        const length = buffer.readUInt32BE(0)
        if (buffer.length < 4 + length) break
        const payload = buffer.subarray(4, 4 + length)
        Queue.unsafeOffer(frames, { code: payload[0]!, body: new Uint8Array(payload.subarray(1)) })
        buffer = buffer.subarray(4 + length)
      }
    })
    socket.on("error", () => undefined)
    const closed = Effect.async<void>((resume) => {
      if (socket.destroyed || socket.readableEnded) resume(Effect.void)
      else socket.once("close", () => resume(Effect.void))
    })
    const write = (bytes: Uint8Array) =>
      Effect.async<void>((resume) => {
        socket.write(bytes, () => resume(Effect.void))
      })
    return {
      send: (payload) => write(frame(payload)),
      write,
      next: Queue.take(frames),
      closed
    }
  })

export const connect = (port: number, host = "127.0.0.1"): Effect.Effect<Connection, Error, Scope.Scope> =>
  Effect.flatMap(openSocket(port, host), fromSocket)

/**
 * Connects to a server with security on: STARTTLS (code 255, acked by a code-only 255), the TLS handshake on the
 * same socket, then RpbAuthReq (253) acked by a code-only 254.
 */
export const connectSecure = (
  port: number,
  user: string,
  password: string,
  host = "127.0.0.1"
): Effect.Effect<Connection, Error, Scope.Scope> =>
  Effect.gen(function*() {
    const plain = yield* openSocket(port, host)
    const ack = yield* Effect.async<Buffer, Error>((resume) => {
      let buffer: Buffer = Buffer.alloc(0)
      const onData = (chunk: Buffer) => {
        buffer = Buffer.concat([buffer, chunk])
        if (buffer.length >= 5) {
          plain.off("data", onData)
          resume(Effect.succeed(buffer))
        }
      }
      plain.on("data", onData)
      plain.write(frame(Uint8Array.of(255)))
    })
    if (ack.length !== 5 || ack.readUInt32BE(0) !== 1 || ack[4] !== 255) {
      return yield* Effect.fail(new Error(`unexpected STARTTLS reply ${ack.toString("hex")}`))
    }
    const secure = yield* Effect.acquireRelease(
      Effect.async<tls.TLSSocket, Error>((resume) => {
        const s = tls.connect({ socket: plain, rejectUnauthorized: false })
        s.once("error", (e) => resume(Effect.fail(e)))
        s.once("secureConnect", () => resume(Effect.succeed(s)))
      }),
      (s) => Effect.sync(() => s.destroy())
    )
    const conn = yield* fromSocket(secure)
    const encoder = new TextEncoder()
    yield* conn.send(Either.getOrThrow(auth.encode(auth.message("RpbAuthReq", {
      user: encoder.encode(user),
      password: encoder.encode(password)
    }))))
    const reply = yield* conn.next
    if (reply.code !== 254) {
      return yield* Effect.fail(new Error(`authentication failed: ${JSON.stringify(decodeReply(reply))}`))
    }
    return conn
  })

const auth = PbCodec.make<{ RpbAuthReq: RiakPb.RpbAuthReq }>(RiakPb.schema(), { RpbAuthReq: 253 })

/** A decoded reply, or the text of an RpbErrorResp. */
export type Reply = KvMessages.KvResponse | {
  readonly _tag: "Error"
  readonly errmsg: string
  readonly errcode: number
}

/** Decodes one frame into a KV reply or an error. */
export const decodeReply = (f: Frame): Reply => {
  if (f.code === 0) {
    const text = decodeErrorResp(f.body)
    return { _tag: "Error", ...text }
  }
  const result = KvMessages.codec.decode(f.code, f.body)
  if (result._tag === "DecodeFailed") throw new Error(`undecodable reply ${f.code}: ${String(result.reason)}`)
  return result.message as KvMessages.KvResponse
}

const errors = PbCodec.make<{ RpbErrorResp: RiakPb.RpbErrorResp }>(RiakPb.schema(), { RpbErrorResp: 0 })

const decodeErrorResp = (body: Uint8Array): { errmsg: string; errcode: number } => {
  const result = errors.decode(0, body)
  if (result._tag === "DecodeFailed") throw new Error(`undecodable RpbErrorResp: ${String(result.reason)}`)
  return { errmsg: new TextDecoder().decode(result.message.errmsg), errcode: result.message.errcode }
}

/** Sends a request and returns the next reply. */
export const call = (conn: Connection, request: KvMessages.KvRequest): Effect.Effect<Reply> =>
  Effect.gen(function*() {
    const payload = Either.getOrThrow(KvMessages.codec.encode(request))
    yield* conn.send(payload)
    return decodeReply(yield* conn.next)
  })

/** Sends a request and collects replies until one has `done` (or an error). */
export const callStream = (conn: Connection, request: KvMessages.KvRequest): Effect.Effect<Array<Reply>> =>
  Effect.gen(function*() {
    const payload = Either.getOrThrow(KvMessages.codec.encode(request))
    yield* conn.send(payload)
    const replies: Array<Reply> = []
    for (;;) {
      const reply = decodeReply(yield* conn.next)
      replies.push(reply)
      if (reply._tag === "Error") return replies
      if ("done" in reply && reply.done === true) return replies
    }
  })
