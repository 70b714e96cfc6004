/**
 * One PB connection: the riak_api_pb_server process, as one fiber.
 *
 * Bytes arrive through socket events and are cut into frames synchronously (pending, in order). Messages other
 * fibers send to the connection (`ctx.send`) go through a bounded Mailbox. The connection fiber is the only
 * consumer of both: it dispatches frames, runs streams, and writes replies coalesced (everything ready is written
 * in one go, nothing waits for more). Reads are paced: while replies are not drained the fiber stops processing,
 * and when too many unprocessed bytes pile up the socket is paused, so a client that never reads its replies
 * cannot make the server buffer without bound.
 */
import * as Cause from "effect/Cause"
import * as Chunk from "effect/Chunk"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as FiberSet from "effect/FiberSet"
import * as Mailbox from "effect/Mailbox"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import type * as Net from "node:net"
import * as NodeTls from "node:tls"
import * as NodeUtil from "node:util"
import type { PbService, PbServiceError, Peer, ProcessResult, StreamResult, Target } from "../PbService.js"
import { renderErrorMessage, renderReason } from "../PbService.js"
import type { Authenticator, Authorizer } from "../Security.js"
import type { Registry } from "../ServiceRegistry.js"
import type { Frame, FrameProblem } from "./frame.js"
import { FrameDecoder, OutBuffer } from "./frame.js"
import type { ConnectionLink, ServiceInstance } from "./instance.js"
import * as Metrics from "./metrics.js"

/** Security settings of a server with security on. */
export interface SecurityConfig {
  readonly secureContext: NodeTls.SecureContext
  readonly requestCert: boolean
  readonly rejectUnauthorized: boolean
  readonly handshakeTimeout: Duration.Duration
  readonly authFailureDelay: Duration.Duration
  readonly maxAuthFailures: number
  readonly authenticator: Authenticator["Type"]
  readonly authorizer: Authorizer["Type"]
}

/** Per-connection settings, validated by PbServer. */
export interface ConnectionConfig {
  readonly nodelay: boolean
  readonly keepalive: boolean
  readonly maxFrameSize: number
  readonly maxConnections: number | undefined
  readonly idleTimeout: Duration.Duration | undefined
  readonly streamIdleTimeout: Duration.Duration | undefined
  readonly mailboxCapacity: number
  readonly flushBytes: number
  readonly readBufferBytes: number
  readonly closeTimeout: Duration.Duration
  readonly security: SecurityConfig | undefined
}

/** What all connections of a server share. */
export interface ServerState {
  readonly config: ConnectionConfig
  readonly registry: Registry
  readonly connections: Map<number, Connection>
  nextId: number
}

/** A snapshot of a connection, for operators and tests. */
export interface ConnectionInfo {
  readonly id: number
  readonly peer: Peer
  readonly user: string | undefined
  readonly secure: boolean
  readonly streaming: boolean
  readonly pendingFrames: number
  readonly bufferedBytes: number
  readonly readPaused: boolean
  readonly writeBlocked: boolean
}

// Exact texts of riak_api_pb_server.
export const Texts = {
  unknownCode: (code: number) => `Unknown message code: ${code}`,
  startTlsWhileOff: "Security not enabled; STARTTLS not allowed.",
  decodeError: (reason: unknown) => `Message decoding error: ${renderReason(reason)}`,
  noEncoding: "Internal service error: no encoding for response message",
  unknownResponse: (result: unknown) =>
    `Unknown PB service response: ${NodeUtil.inspect(result, { depth: 4, breakLength: Infinity })}`,
  requestDuringStream: "Cannot send another request while one is in progress",
  defect: "Error processing incoming message",
  streamDefect: "Error processing stream message",
  startTlsFirst: "Security is enabled, please STARTTLS first",
  authenticateFirst: "Security is enabled, please authenticate first",
  authenticationFailed: "Authentication failed",
  permissionDenied: (user: string, permission: string, target: Target | undefined) =>
    `Permission denied: User '${user}' does not have '${permission}' on ${renderTarget(target)}`,
  // Beyond riak:
  frameTooLarge: (length: number, limit: number) => `Message too large: ${length} bytes (limit ${limit})`,
  tooManyConnections: "Too many connections",
  streamTimeout: "Stream timed out"
} as const

const bytesText = (value: string | Uint8Array): string =>
  typeof value === "string" ? value : Buffer.from(value).toString("utf8")

const renderTarget = (target: Target | undefined): string => {
  if (target === undefined) return "ANY"
  if (typeof target === "string" || target instanceof Uint8Array) return bytesText(target)
  return `${bytesText(target.type)}/${bytesText(target.bucket)}`
}

/** An `RpbErrorResp` payload (code byte + body) with `errcode` 0, always written. */
export const errorPayload = (message: Uint8Array): Uint8Array => {
  const lengthBytes: Array<number> = []
  let n = message.length
  do {
    let byte = n & 0x7f
    n = Math.floor(n / 128)
    if (n > 0) byte |= 0x80
    lengthBytes.push(byte)
  } while (n > 0)
  const out = new Uint8Array(1 + 1 + lengthBytes.length + message.length + 2)
  let at = 0
  out[at++] = 0 // RpbErrorResp
  out[at++] = 0x0a // field 1, bytes
  for (const b of lengthBytes) out[at++] = b
  out.set(message, at)
  at += message.length
  out[at++] = 0x10 // field 2, varint
  out[at++] = 0
  return out
}

const textEncoder = new TextEncoder()
const errorText = (text: string) => errorPayload(textEncoder.encode(text))

/** A message for the connection's mailbox. */
type Envelope =
  | { readonly _tag: "Info"; readonly from: ServiceInstance; readonly info: unknown }
  | { readonly _tag: "Chunk"; readonly token: object; readonly replies: Chunk.Chunk<unknown> }
  | { readonly _tag: "End"; readonly token: object }
  | { readonly _tag: "Fail"; readonly token: object; readonly error: PbServiceError }
  | { readonly _tag: "Defect"; readonly token: object; readonly cause: Cause.Cause<unknown> }

type Streaming =
  | { readonly _tag: "Mailbox"; readonly instance: ServiceInstance; readonly reqId: unknown }
  | { readonly _tag: "Effect"; readonly instance: ServiceInstance; readonly token: object }

type SecurityState = "Off" | "AwaitStartTls" | "AwaitAuth" | "Authenticated"

/** What to do after a step: go on, or close the connection (after flushing what is buffered). */
type Next = "Continue" | "Close"

const CODE_START_TLS = 255
const CODE_AUTH_REQ = 253
const CODE_AUTH_RESP = 254

export class Connection {
  socket: Net.Socket | NodeTls.TLSSocket
  readonly peer: Peer
  private readonly decoder: FrameDecoder
  private pending: Array<Frame> = []
  private head = 0
  private pendingBytes = 0
  private problem: FrameProblem | undefined = undefined
  private eof = false
  closed = false
  private readonly out = new OutBuffer()
  private writeBlocked = false
  private readPaused = false
  private waiter: ((effect: Effect.Effect<void>) => void) | undefined = undefined
  private readonly instances = new Map<PbService, ServiceInstance>()
  private streaming: Streaming | undefined = undefined
  private securityState: SecurityState
  private user: string | undefined = undefined
  private authFailures = 0
  private forks = 0
  private secure = false
  private readonly link: ConnectionLink
  private readonly closedSignal: Deferred.Deferred<void>

  constructor(
    readonly id: number,
    raw: Net.Socket,
    private readonly state: ServerState,
    private readonly mailbox: Mailbox.Mailbox<Envelope>,
    private readonly fibers: FiberSet.FiberSet<unknown, unknown>,
    closedSignal: Deferred.Deferred<void>
  ) {
    this.socket = raw
    this.closedSignal = closedSignal
    this.peer = { address: raw.remoteAddress ?? "", port: raw.remotePort ?? 0 }
    this.decoder = new FrameDecoder(state.config.maxFrameSize)
    this.securityState = state.config.security === undefined ? "Off" : "AwaitStartTls"
    this.link = {
      connectionId: id,
      peer: this.peer,
      user: Effect.sync(() => Option.fromNullable(this.user)),
      offer: (from, info) =>
        Effect.tap(this.mailbox.offer({ _tag: "Info", from, info }), (ok) => {
          if (ok) this.wake()
        }),
      unsafeOffer: (from, info) => {
        const ok = this.mailbox.unsafeOffer({ _tag: "Info", from, info })
        if (ok) this.wake()
        return ok
      },
      fork: (effect) =>
        Effect.suspend(() => {
          this.forks++
          return FiberSet.run(this.fibers, effect)
        })
    }
  }

  info(): ConnectionInfo {
    return {
      id: this.id,
      peer: this.peer,
      user: this.user,
      secure: this.secure,
      streaming: this.streaming !== undefined,
      pendingFrames: this.pending.length - this.head,
      bufferedBytes: this.out.size + (this.closed ? 0 : this.socket.writableLength),
      readPaused: this.readPaused,
      writeBlocked: this.writeBlocked
    }
  }

  // -------------------------------------------------------------------------------------------------------------
  // Socket events
  // -------------------------------------------------------------------------------------------------------------

  private readonly onData = (chunk: Buffer): void => {
    const before = this.pending.length
    const problem = this.decoder.push(chunk, this.pending)
    for (let i = before; i < this.pending.length; i++) this.pendingBytes += this.pending[i]!.body.length + 5
    if (problem !== undefined) {
      this.problem = problem
      this.pause()
    } else if (this.pendingBytes >= this.state.config.readBufferBytes) {
      this.pause()
    }
    this.wake()
  }

  private readonly onEnd = (): void => {
    this.eof = true
    this.wake()
  }

  private readonly onClose = (): void => {
    this.closed = true
    Deferred.unsafeDone(this.closedSignal, Exit.void)
    this.wake()
  }

  private readonly onError = (): void => {
    // 'close' follows; the error itself is the peer's business.
  }

  attach(socket: Net.Socket | NodeTls.TLSSocket): void {
    this.socket = socket
    socket.on("data", this.onData)
    socket.on("end", this.onEnd)
    socket.on("close", this.onClose)
    socket.on("error", this.onError)
    if (socket.destroyed) this.onClose()
  }

  private detach(socket: Net.Socket | NodeTls.TLSSocket): void {
    socket.off("data", this.onData)
    socket.off("end", this.onEnd)
    socket.off("close", this.onClose)
    socket.off("error", this.onError)
  }

  private pause(): void {
    if (!this.readPaused) {
      this.readPaused = true
      this.socket.pause()
    }
  }

  private resume(): void {
    if (this.readPaused) {
      this.readPaused = false
      this.socket.resume()
    }
  }

  private wake(): void {
    const waiter = this.waiter
    if (waiter !== undefined) {
      this.waiter = undefined
      waiter(Effect.void)
    }
  }

  private hasFrames(): boolean {
    return this.head < this.pending.length
  }

  private hasWork(): boolean {
    return this.hasFrames() || this.problem !== undefined || this.eof || this.closed ||
      Option.getOrElse(this.mailbox.unsafeSize(), () => 0) > 0
  }

  /** Suspends until there is something to do. */
  private readonly waitForWork: Effect.Effect<void> = Effect.async<void>((resume) => {
    if (this.hasWork()) return resume(Effect.void)
    this.waiter = resume
    return Effect.sync(() => {
      if (this.waiter === resume) this.waiter = undefined
    })
  })

  private takeFrame(): Frame {
    const frame = this.pending[this.head++]!
    this.pendingBytes -= frame.body.length + 5
    if (this.head === this.pending.length) {
      this.pending = []
      this.head = 0
    }
    return frame
  }

  // -------------------------------------------------------------------------------------------------------------
  // Writing
  // -------------------------------------------------------------------------------------------------------------

  private send(payload: Uint8Array): void {
    this.out.push(payload)
  }

  private sendError(text: string, kind: Metrics.ErrorKind): Effect.Effect<void> {
    this.out.push(errorText(text))
    return Metric.increment(Metrics.errorsFor(kind))
  }

  /** Writes everything buffered in one go, then waits until the socket has drained it. */
  private flush(): Effect.Effect<void> {
    return Effect.suspend(() => {
      if (this.out.size > 0 && !this.closed) {
        const pieces = this.out.take()
        const socket = this.socket
        let ok: boolean
        if (pieces.length === 1) {
          ok = socket.write(pieces[0]!)
        } else {
          socket.cork()
          ok = true
          for (const piece of pieces) ok = socket.write(piece)
          socket.uncork()
        }
        if (!ok) this.writeBlocked = true
      }
      return this.writeBlocked ? this.awaitDrain : Effect.void
    })
  }

  private readonly awaitDrain: Effect.Effect<void> = Effect.async<void>((resume) => {
    const socket = this.socket
    const done = () => {
      socket.off("drain", done)
      socket.off("close", done)
      this.writeBlocked = false
      resume(Effect.void)
    }
    if (this.closed || !socket.writableNeedDrain) return done()
    socket.on("drain", done)
    socket.on("close", done)
    return Effect.sync(() => {
      socket.off("drain", done)
      socket.off("close", done)
    })
  })

  private maybeFlush(): Effect.Effect<void> {
    return this.out.size >= this.state.config.flushBytes ? this.flush() : Effect.void
  }

  // -------------------------------------------------------------------------------------------------------------
  // The loop
  // -------------------------------------------------------------------------------------------------------------

  /** Serves the connection until it closes; a client that disconnects interrupts whatever is running. */
  run(): Effect.Effect<void> {
    return Effect.raceFirst(this.loop, Deferred.await(this.closedSignal))
  }

  private readonly loop: Effect.Effect<void> = Effect.gen(this, function*() {
    while (true) {
      if (this.closed) return
      if (this.streaming !== undefined) {
        if ((yield* this.streamStep()) === "Close") return yield* this.flush()
        continue
      }
      if (Option.getOrElse(this.mailbox.unsafeSize(), () => 0) > 0) {
        // Messages for a stream that is over (or that never started): dropped, as riak drops them.
        yield* this.mailbox.clear
      }
      if (this.hasFrames()) {
        const frame = this.takeFrame()
        if ((yield* this.handleFrame(frame)) === "Close") return yield* this.flush()
        yield* this.maybeFlush()
        continue
      }
      yield* this.flush()
      if (this.problem !== undefined) return yield* this.handleProblem(this.problem)
      if (this.eof) return
      this.resume()
      const idle = this.state.config.idleTimeout
      if (idle === undefined) {
        yield* this.waitForWork
      } else if (Option.isNone(yield* Effect.timeoutOption(this.waitForWork, idle))) {
        return
      }
    }
  })

  private handleProblem(problem: FrameProblem): Effect.Effect<void> {
    if (problem._tag === "Empty") return Effect.void
    return Effect.zipRight(
      this.sendError(Texts.frameTooLarge(problem.length, this.state.config.maxFrameSize), "oversized_frame"),
      this.flush()
    )
  }

  // -------------------------------------------------------------------------------------------------------------
  // Requests
  // -------------------------------------------------------------------------------------------------------------

  private handleFrame(frame: Frame): Effect.Effect<Next> {
    switch (this.securityState) {
      case "Off":
        if (frame.code === CODE_START_TLS) {
          return Effect.as(this.sendError(Texts.startTlsWhileOff, "security"), "Continue")
        }
        return this.dispatch(frame)
      case "Authenticated":
        return this.dispatch(frame)
      case "AwaitStartTls":
        if (frame.code === CODE_START_TLS) return this.startTls()
        return Effect.as(this.sendError(Texts.startTlsFirst, "security"), "Continue")
      case "AwaitAuth":
        if (frame.code === CODE_AUTH_REQ) return this.authenticate(frame)
        return Effect.as(this.sendError(Texts.authenticateFirst, "security"), "Continue")
    }
  }

  private dispatch(frame: Frame): Effect.Effect<Next> {
    return Effect.gen(this, function*() {
      const started = performance.now()
      yield* Metric.increment(Metrics.requestsFor(frame.code))
      const service = yield* this.state.registry.lookup(frame.code)
      if (Option.isNone(service)) {
        yield* this.sendError(Texts.unknownCode(frame.code), "unknown_code")
        return "Continue" as const
      }
      let instance = this.instances.get(service.value)
      if (instance === undefined) {
        const opened = yield* Effect.exit(service.value.open(this.link))
        if (Exit.isFailure(opened)) return yield* this.defect(opened.cause, service.value, frame.code, false)
        instance = opened.value
        this.instances.set(service.value, instance)
      }
      let decoded: ReturnType<ServiceInstance["decode"]>
      try {
        decoded = instance.decode(frame.code, frame.body)
      } catch (thrown) {
        return yield* this.defect(Cause.die(thrown), service.value, frame.code, false)
      }
      if (decoded._tag === "DecodeFailed") {
        yield* this.sendError(Texts.decodeError(decoded.reason), "decode")
        return "Continue" as const
      }
      if (decoded.permission !== undefined && this.state.config.security !== undefined) {
        const user = this.user ?? ""
        const allowed = yield* this.state.config.security.authorizer.check(user, decoded.permission)
        if (!allowed) {
          yield* this.sendError(
            Texts.permissionDenied(user, decoded.permission.permission, decoded.permission.target),
            "permission"
          )
          return "Continue" as const
        }
      }
      const exit = yield* Effect.exit(instance.process(decoded.message))
      const next = yield* this.handleProcessExit(exit, instance, frame.code)
      if (this.streaming === undefined && this.forks > 0) yield* this.clearForks()
      yield* Metric.update(Metrics.requestDuration, Duration.millis(performance.now() - started))
      return next
    })
  }

  private handleProcessExit(
    exit: Exit.Exit<ProcessResult<unknown, unknown, unknown>, PbServiceError>,
    instance: ServiceInstance,
    code: number
  ): Effect.Effect<Next> {
    if (Exit.isFailure(exit)) return this.handleFailure(exit.cause, instance, code, false)
    const result = exit.value
    switch (result._tag) {
      case "Reply":
        return Effect.as(this.sendReplies(instance, result.replies), "Continue")
      case "Failure":
        return Effect.as(this.sendError(renderText(result.error), "process"), "Continue")
      case "StartStream":
        if (!instance.streams) return Effect.as(this.unexpected(result), "Continue")
        this.streaming = { _tag: "Mailbox", instance, reqId: result.reqId }
        return Effect.succeed("Continue")
      case "ReplyStream":
        return this.startEffectStream(instance, result.stream)
      default:
        return Effect.as(this.unexpected(result), "Continue")
    }
  }

  /** A failure of process/processStream: a PbServiceError is an error reply, a defect closes the connection. */
  private handleFailure(
    cause: Cause.Cause<PbServiceError>,
    instance: ServiceInstance,
    code: number,
    inStream: boolean
  ): Effect.Effect<Next> {
    const failure = Cause.failureOption(cause)
    if (Option.isSome(failure) && !Cause.isDie(cause)) {
      return Effect.as(this.sendError(renderText(failure.value.error), "process"), "Continue")
    }
    if (Cause.isInterruptedOnly(cause)) return Effect.interrupt
    return this.defect(cause, instance.service, code, inStream)
  }

  private defect(cause: Cause.Cause<unknown>, service: PbService, code: number, inStream: boolean): Effect.Effect<Next> {
    return Effect.gen(this, function*() {
      yield* Effect.logError(`PB service ${service.name} failed; closing connection ${this.id}`, cause).pipe(
        Effect.annotateLogs({ service: service.name, code, connection: this.id })
      )
      yield* this.sendError(inStream ? Texts.streamDefect : Texts.defect, "defect")
      return "Close" as const
    })
  }

  private unexpected(result: unknown): Effect.Effect<void> {
    return this.sendError(Texts.unknownResponse(result), "unexpected_result")
  }

  private sendReplies(instance: ServiceInstance, replies: Iterable<unknown>): Effect.Effect<void> {
    return Effect.suspend(() => {
      let failures = 0
      for (const reply of replies) {
        const encoded = instance.encode(reply)
        if (Either.isRight(encoded) && encoded.right instanceof Uint8Array && encoded.right.length > 0) {
          this.send(encoded.right)
        } else {
          failures++
          this.out.push(errorText(Texts.noEncoding))
        }
      }
      return failures === 0 ? Effect.void : Metric.incrementBy(Metrics.errorsFor("encode"), failures)
    })
  }

  private clearForks(): Effect.Effect<void> {
    this.forks = 0
    return FiberSet.clear(this.fibers)
  }

  // -------------------------------------------------------------------------------------------------------------
  // Streams
  // -------------------------------------------------------------------------------------------------------------

  private startEffectStream(instance: ServiceInstance, replies: Stream.Stream<unknown, PbServiceError>): Effect.Effect<Next> {
    const token = {}
    const offer = (envelope: Envelope) =>
      Effect.tap(this.mailbox.offer(envelope), (ok) => {
        if (ok) this.wake()
      })
    const runner = Stream.runForEachChunk(replies, (chunk) => offer({ _tag: "Chunk", token, replies: chunk })).pipe(
      Effect.matchCauseEffect({
        onSuccess: () => offer({ _tag: "End", token }),
        onFailure: (cause) => {
          if (Cause.isInterruptedOnly(cause)) return Effect.void
          const failure = Cause.failureOption(cause)
          return Option.isSome(failure) && !Cause.isDie(cause)
            ? offer({ _tag: "Fail", token, error: failure.value })
            : offer({ _tag: "Defect", token, cause })
        }
      })
    )
    this.streaming = { _tag: "Effect", instance, token }
    return Effect.as(this.link.fork(runner), "Continue")
  }

  private endStream(): Effect.Effect<void> {
    this.streaming = undefined
    return this.forks > 0 ? this.clearForks() : Effect.void
  }

  private streamStep(): Effect.Effect<Next> {
    return Effect.gen(this, function*() {
      const streaming = this.streaming!
      if (this.hasFrames() || this.problem !== undefined) {
        yield* this.sendError(Texts.requestDuringStream, "request_during_stream")
        return "Close" as const
      }
      if (this.eof) return "Close" as const
      const batch = yield* this.mailbox.clear
      if (Chunk.isEmpty(batch)) {
        yield* this.flush()
        const timeout = this.state.config.streamIdleTimeout
        if (timeout === undefined) {
          yield* this.waitForWork
        } else if (Option.isNone(yield* Effect.timeoutOption(this.waitForWork, timeout))) {
          yield* this.sendError(Texts.streamTimeout, "stream_timeout")
          yield* this.endStream()
        }
        return "Continue" as const
      }
      for (const envelope of batch) {
        if (this.streaming !== streaming) break // the stream ended: the rest is dropped
        const next = yield* this.handleEnvelope(streaming, envelope)
        if (next === "Close") return next
        yield* this.maybeFlush()
      }
      return "Continue" as const
    })
  }

  private handleEnvelope(streaming: Streaming, envelope: Envelope): Effect.Effect<Next> {
    if (streaming._tag === "Mailbox") {
      if (envelope._tag !== "Info" || envelope.from !== streaming.instance) return Effect.succeed("Continue")
      return Effect.flatMap(
        Effect.exit(streaming.instance.processStream(envelope.info, streaming.reqId)),
        (exit) => this.handleStreamExit(exit, streaming.instance)
      )
    }
    if (envelope._tag === "Info" || envelope.token !== streaming.token) return Effect.succeed("Continue")
    switch (envelope._tag) {
      case "Chunk":
        return Effect.as(this.sendReplies(streaming.instance, envelope.replies), "Continue")
      case "End":
        return Effect.as(this.endStream(), "Continue")
      case "Fail":
        return Effect.as(
          Effect.zipRight(this.sendError(renderText(envelope.error.error), "process"), this.endStream()),
          "Continue"
        )
      case "Defect":
        return this.defect(envelope.cause, streaming.instance.service, -1, true)
    }
  }

  private handleStreamExit(
    exit: Exit.Exit<StreamResult<unknown, unknown>, PbServiceError>,
    instance: ServiceInstance
  ): Effect.Effect<Next> {
    if (Exit.isFailure(exit)) {
      return Effect.flatMap(this.handleFailure(exit.cause, instance, -1, true), (next) =>
        next === "Close" ? Effect.succeed(next) : Effect.as(this.endStream(), next))
    }
    const result = exit.value
    switch (result._tag) {
      case "Reply":
        return Effect.as(this.sendReplies(instance, result.replies), "Continue")
      case "Ignore":
        return Effect.succeed("Continue")
      case "Done":
        return Effect.as(Effect.zipRight(this.sendReplies(instance, result.replies), this.endStream()), "Continue")
      case "Failure":
        return Effect.as(
          Effect.zipRight(this.sendError(renderText(result.error), "process"), this.endStream()),
          "Continue"
        )
      default:
        return Effect.as(Effect.zipRight(this.unexpected(result), this.endStream()), "Continue")
    }
  }

  // -------------------------------------------------------------------------------------------------------------
  // Security
  // -------------------------------------------------------------------------------------------------------------

  private startTls(): Effect.Effect<Next> {
    const security = this.state.config.security!
    return Effect.gen(this, function*() {
      if (this.hasFrames() || this.problem !== undefined) {
        // Bytes after STARTTLS before the handshake: not a TLS client.
        yield* Metric.increment(Metrics.errorsFor("tls"))
        return "Close" as const
      }
      this.send(Uint8Array.of(CODE_START_TLS))
      yield* this.flush()
      if (this.closed) return "Close" as const
      const raw = this.socket
      this.detach(raw)
      this.resume()
      const upgraded = yield* Effect.async<NodeTls.TLSSocket, Error>((resume) => {
        const tlsSocket = new NodeTls.TLSSocket(raw, {
          isServer: true,
          secureContext: security.secureContext,
          requestCert: security.requestCert,
          rejectUnauthorized: security.rejectUnauthorized
        })
        const onSecure = () => {
          tlsSocket.off("error", onFailure)
          resume(Effect.succeed(tlsSocket))
        }
        const onFailure = (error: Error) => {
          tlsSocket.off("secure", onSecure)
          resume(Effect.fail(error))
        }
        tlsSocket.once("secure", onSecure)
        tlsSocket.once("error", onFailure)
        // Errors after the handshake come with 'close'; this keeps them from being unhandled.
        tlsSocket.on("error", () => {})
        return Effect.sync(() => tlsSocket.destroy())
      }).pipe(Effect.timeoutFail({
        duration: security.handshakeTimeout,
        onTimeout: () => new Error("TLS handshake timed out")
      }), Effect.either)
      if (Either.isLeft(upgraded)) {
        yield* Effect.logDebug(`TLS handshake failed on connection ${this.id}`, upgraded.left)
        yield* Metric.increment(Metrics.errorsFor("tls"))
        this.closed = true
        raw.destroy()
        return "Close" as const
      }
      this.secure = true
      this.securityState = "AwaitAuth"
      this.attach(upgraded.right)
      return "Continue" as const
    })
  }

  private authenticate(frame: Frame): Effect.Effect<Next> {
    const security = this.state.config.security!
    return Effect.gen(this, function*() {
      const request = decodeAuthReq(frame.body)
      if (request === undefined) {
        yield* this.sendError(Texts.decodeError("invalid RpbAuthReq"), "decode")
        return "Continue" as const
      }
      const socket = this.socket
      const certificate = socket instanceof NodeTls.TLSSocket ? socket.getPeerCertificate() : undefined
      const ok = yield* security.authenticator.authenticate({
        user: request.user,
        password: request.password,
        peer: this.peer,
        peerCertificate: certificate !== undefined && Object.keys(certificate).length > 0 ? certificate : undefined
      })
      if (ok) {
        this.user = request.user
        this.authFailures = 0
        this.securityState = "Authenticated"
        this.send(Uint8Array.of(CODE_AUTH_RESP))
        return "Continue" as const
      }
      this.authFailures++
      yield* Effect.sleep(security.authFailureDelay)
      yield* this.sendError(Texts.authenticationFailed, "authentication")
      return this.authFailures >= security.maxAuthFailures ? "Close" as const : "Continue" as const
    })
  }

  // -------------------------------------------------------------------------------------------------------------
  // Teardown
  // -------------------------------------------------------------------------------------------------------------

  /** Releases the socket: a graceful end after a normal finish, a destroy when interrupted (server shutdown). */
  teardown(exit: Exit.Exit<unknown, unknown>): Effect.Effect<void> {
    return Effect.sync(() => {
      const socket = this.socket
      this.detach(socket)
      socket.on("error", () => {})
      if (socket.destroyed) return
      if (Exit.isInterrupted(exit) || this.closed) {
        socket.destroy()
        return
      }
      socket.end()
      const timer = setTimeout(() => socket.destroy(), Duration.toMillis(this.state.config.closeTimeout))
      timer.unref()
      socket.once("close", () => clearTimeout(timer))
    })
  }
}

const renderText = (error: Parameters<typeof renderErrorMessage>[0]): string =>
  Buffer.from(renderErrorMessage(error)).toString("utf8")

/** Decodes `RpbAuthReq { required bytes user = 1; required bytes password = 2; }` (unknown fields skipped). */
const decodeAuthReq = (body: Uint8Array): { user: string; password: string } | undefined => {
  let user: Uint8Array | undefined
  let password: Uint8Array | undefined
  let at = 0
  const varint = (): number | undefined => {
    let result = 0
    let shift = 0
    while (at < body.length) {
      const byte = body[at++]!
      result += (byte & 0x7f) * 2 ** shift
      if ((byte & 0x80) === 0) return result
      shift += 7
      if (shift > 49) return undefined
    }
    return undefined
  }
  while (at < body.length) {
    const key = varint()
    if (key === undefined) return undefined
    const field = Math.floor(key / 8)
    const wire = key & 7
    if (wire === 0) {
      if (varint() === undefined) return undefined
    } else if (wire === 1) {
      at += 8
    } else if (wire === 5) {
      at += 4
    } else if (wire === 2) {
      const length = varint()
      if (length === undefined || at + length > body.length) return undefined
      const value = body.subarray(at, at + length)
      at += length
      if (field === 1) user = value
      else if (field === 2) password = value
    } else {
      return undefined
    }
  }
  if (at > body.length || user === undefined || password === undefined) return undefined
  return { user: Buffer.from(user).toString("utf8"), password: Buffer.from(password).toString("utf8") }
}

/** Serves one accepted socket until it closes. Never fails: everything is answered on the wire or logged. */
export const serve = (raw: Net.Socket, state: ServerState): Effect.Effect<void> =>
  Effect.gen(function*() {
    const id = ++state.nextId
    yield* Metric.increment(Metrics.connectionsAccepted)
    const config = state.config
    if (config.maxConnections !== undefined && state.connections.size >= config.maxConnections) {
      yield* Metric.increment(Metrics.errorsFor("too_many_connections"))
      raw.on("error", () => {})
      raw.end(frameOf(errorText(Texts.tooManyConnections)))
      const timer = setTimeout(() => raw.destroy(), Duration.toMillis(config.closeTimeout))
      timer.unref()
      raw.once("close", () => clearTimeout(timer))
      return
    }
    if (!raw.destroyed) {
      raw.setNoDelay(config.nodelay)
      raw.setKeepAlive(config.keepalive)
    }
    const mailbox = yield* Mailbox.make<Envelope>({ capacity: config.mailboxCapacity, strategy: "suspend" })
    const fibers = yield* FiberSet.make<unknown, unknown>()
    const closedSignal = yield* Deferred.make<void>()
    const connection = new Connection(id, raw, state, mailbox, fibers, closedSignal)
    state.connections.set(id, connection)
    yield* Metric.set(Metrics.connectionsActive, state.connections.size)
    yield* Effect.addFinalizer((exit) =>
      Effect.zipRight(
        Effect.zipRight(mailbox.shutdown, connection.teardown(exit)),
        Effect.suspend(() => {
          state.connections.delete(id)
          return Metric.set(Metrics.connectionsActive, state.connections.size)
        })
      )
    )
    connection.attach(raw)
    yield* connection.run()
  }).pipe(
    Effect.scoped,
    Effect.catchAllCause((cause) =>
      Cause.isInterruptedOnly(cause) ? Effect.void : Effect.logError("PB connection failed", cause)
    )
  )

const frameOf = (payload: Uint8Array): Uint8Array => {
  const out = new Uint8Array(payload.length + 4)
  new DataView(out.buffer).setUint32(0, payload.length)
  out.set(payload, 4)
  return out
}
