/**
 * A minimal PB client for tests, written independently of the server's framing code: it concatenates what it
 * receives and cuts frames from the front.
 */
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Mailbox from "effect/Mailbox"
import type * as Scope from "effect/Scope"
import * as Net from "node:net"
import type * as NodeTls from "node:tls"

export interface Frame {
  readonly code: number
  readonly body: Buffer
}

export class ClientClosed extends Data.TaggedError("ClientClosed")<{ readonly buffered: number }> {}

export interface PbTestClient {
  readonly socket: Net.Socket | NodeTls.TLSSocket
  /** Writes one frame. */
  readonly send: (code: number, body?: string | Uint8Array) => Effect.Effect<void>
  /** Writes raw bytes. */
  readonly sendRaw: (bytes: Uint8Array) => Effect.Effect<void>
  /** The next frame; fails with ClientClosed when the server closed the connection. */
  readonly next: Effect.Effect<Frame, ClientClosed>
  /** Sends a frame and returns the next frame. */
  readonly request: (code: number, body?: string | Uint8Array) => Effect.Effect<Frame, ClientClosed>
  /** Waits until the server closes the connection; the frames received before it. */
  readonly untilClosed: Effect.Effect<ReadonlyArray<Frame>>
  /** Switches to another socket (after a TLS handshake on this one). */
  readonly useSocket: (socket: Net.Socket | NodeTls.TLSSocket) => void
}

export const encodeFrame = (code: number, body: string | Uint8Array = new Uint8Array()): Buffer => {
  const payload = typeof body === "string" ? Buffer.from(body) : Buffer.from(body)
  const out = Buffer.alloc(5 + payload.length)
  out.writeUInt32BE(payload.length + 1, 0)
  out[4] = code
  payload.copy(out, 5)
  return out
}

export const connect = (port: number): Effect.Effect<PbTestClient, Error, Scope.Scope> =>
  Effect.gen(function*() {
    const raw = yield* Effect.acquireRelease(
      Effect.async<Net.Socket, Error>((resume) => {
        const socket = Net.connect({ port, host: "127.0.0.1" })
        socket.once("connect", () => resume(Effect.succeed(socket)))
        socket.once("error", (error) => resume(Effect.fail(error)))
      }),
      (socket) => Effect.sync(() => socket.destroy())
    )
    return yield* wrap(raw)
  })

export const wrap = (initial: Net.Socket | NodeTls.TLSSocket): Effect.Effect<PbTestClient, never, Scope.Scope> =>
  Effect.gen(function*() {
    const frames = yield* Mailbox.make<Frame, ClientClosed>()
    let socket = initial
    let buffer = Buffer.alloc(0)
    const onData = (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk])
      while (buffer.length >= 4) {
        const length = buffer.readUInt32BE(0)
        if (buffer.length < 4 + length) break
        frames.unsafeOffer({ code: buffer[4]!, body: Buffer.from(buffer.subarray(5, 4 + length)) })
        buffer = buffer.subarray(4 + length)
      }
    }
    const onClose = () => {
      Effect.runSync(frames.fail(new ClientClosed({ buffered: buffer.length })))
    }
    const attach = (s: Net.Socket | NodeTls.TLSSocket) => {
      s.on("data", onData)
      s.on("close", onClose)
      s.on("end", onClose)
      s.on("error", () => {})
    }
    attach(socket)
    yield* Effect.addFinalizer(() => Effect.sync(() => socket.destroy()))
    const write = (bytes: Uint8Array) =>
      Effect.async<void>((resume) => {
        socket.write(bytes, () => resume(Effect.void))
      })
    const next = Effect.flatMap(frames.takeN(1), ([chunk]) => {
      const [first] = chunk
      return first === undefined ? Effect.fail(new ClientClosed({ buffered: buffer.length })) : Effect.succeed(first)
    })
    const untilClosed = Effect.gen(function*() {
      const received: Array<Frame> = []
      while (true) {
        const [chunk, done] = yield* frames.takeAll.pipe(Effect.orElseSucceed(() => [[], true] as const))
        received.push(...chunk)
        if (done) return received
      }
    })
    return {
      get socket() {
        return socket
      },
      send: (code, body) => write(encodeFrame(code, body)),
      sendRaw: write,
      next,
      request: (code, body) => Effect.zipRight(write(encodeFrame(code, body)), next),
      untilClosed,
      useSocket: (s) => {
        socket.off("data", onData)
        socket.off("close", onClose)
        socket.off("end", onClose)
        socket = s
        attach(s)
      }
    }
  })

/** `RpbErrorResp` fields, decoded by hand (field 1 bytes, field 2 varint). */
export const decodeError = (body: Buffer): { errmsg: string; errcode: number | undefined } => {
  let at = 0
  let errmsg = ""
  let errcode: number | undefined
  const varint = () => {
    let result = 0
    let shift = 0
    while (true) {
      const byte = body[at++]!
      result += (byte & 0x7f) * 2 ** shift
      if ((byte & 0x80) === 0) return result
      shift += 7
    }
  }
  while (at < body.length) {
    const key = varint()
    if (key === 0x0a) {
      const length = varint()
      errmsg = body.subarray(at, at + length).toString("utf8")
      at += length
    } else if (key === 0x10) {
      errcode = varint()
    } else {
      throw new Error(`unexpected key ${key}`)
    }
  }
  return { errmsg, errcode }
}

/** Checks `frame` is an RpbErrorResp with errcode 0 written, and gives its text. */
export const errorText = (frame: Frame): string => {
  if (frame.code !== 0) throw new Error(`expected an error reply, got code ${frame.code}`)
  const { errcode, errmsg } = decodeError(frame.body)
  if (errcode !== 0) throw new Error(`errcode ${errcode} not written as 0`)
  return errmsg
}
