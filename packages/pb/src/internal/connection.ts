/**
 * One PB connection: the riak_api_pb_server process, as a fiber while it has work (none while idle).
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
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as FiberSet from "effect/FiberSet"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type * as Net from "node:net"
import * as NodeTls from "node:tls"
import * as NodeUtil from "node:util"
import type {
  Encoded,
  PbService,
  PbServiceError,
  Peer,
  ProcessResult,
  StreamResult,
  Target
} from "../PbService.js"
import { renderErrorMessage, renderReason } from "../PbService.js"
import type { Authenticator, Authorizer } from "../Security.js"
import type { Registry } from "../ServiceRegistry.js"
import type { Frame, FrameProblem } from "./frame.js"
import { FrameDecoder, OutBuffer } from "./frame.js"
import { Inbox } from "./inbox.js"
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
  /** Starts a connection's fiber (in the server's runtime: its services, logger, tracer). */
  readonly runFork: (effect: Effect.Effect<void>) => Fiber.RuntimeFiber<void>
  nextId: number
  /** Set when the server shuts down: sockets accepted from then on are destroyed. */
  stopping: boolean
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

/**
 * A step's outcome, when known synchronously, or the Effect that gives it. Requests to services that answer
 * with plain values are served without building any Effect.
 */
type Step = Next | Effect.Effect<Next>

const toEffect = (step: Step): Effect.Effect<Next> => (typeof step === "string" ? Effect.succeed(step) : step)

const isProcessResult = (result: unknown): result is ProcessResult<unknown, unknown, unknown> => {
  const tag = (result as { readonly _tag?: unknown })._tag
  return tag === "Reply" || tag === "Failure" || tag === "StartStream" || tag === "ReplyStream"
}

const CODE_START_TLS = 255
const CODE_AUTH_REQ = 253
const CODE_AUTH_RESP = 254

export class Connection implements ConnectionLink {
  socket: Net.Socket | NodeTls.TLSSocket
  readonly peer: Peer
  /** The connection's fiber while it has work, interrupted when the socket closes. */
  private fiber: Fiber.RuntimeFiber<unknown, unknown> | undefined = undefined
  /**
   * Idle with no fiber: an idle connection keeps no fiber (a suspended fiber and its stack were most of an idle
   * connection's memory). Socket events serve what they can inline and start a fiber for the rest.
   */
  private parked = false
  private readonly decoder: FrameDecoder
  private pending: Array<Frame> = []
  private head = 0
  private pendingBytes = 0
  private problem: FrameProblem | undefined = undefined
  private eof = false
  closed = false
  private finished = false
  private readonly out = new OutBuffer()
  private writeBlocked = false
  private readPaused = false
  private waiter: ((effect: Effect.Effect<void>) => void) | undefined = undefined
  /** A step the inline path could not finish, for the fiber to run next. */
  private handoff: Step | undefined = undefined
  private activity = 0
  private instances: Map<PbService, ServiceInstance> | undefined = undefined
  private streaming: Streaming | undefined = undefined
  private securityState: SecurityState
  private userName: string | undefined = undefined
  private authFailures = 0
  private forks = 0
  /** When the first request of the batch being served was dispatched (-1: none yet). */
  private batchStarted = -1
  private secure = false
  private inbox: Inbox<Envelope> | undefined = undefined
  private fibers: { readonly set: FiberSet.FiberSet<unknown, unknown>; readonly scope: Scope.CloseableScope } | undefined =
    undefined
  // Metrics counted here and recorded when the connection goes idle (once per batch, not per request).
  private requestCodes: Array<number> = []
  private requestCounts: Array<number> = []
  private errorCounts: Map<Metrics.ErrorKind, number> | undefined = undefined

  constructor(
    readonly id: number,
    raw: Net.Socket,
    private readonly state: ServerState
  ) {
    this.socket = raw
    this.peer = { address: raw.remoteAddress ?? "", port: raw.remotePort ?? 0 }
    this.decoder = new FrameDecoder(state.config.maxFrameSize)
    this.securityState = state.config.security === undefined ? "Off" : "AwaitStartTls"
  }

  // The connection is its services' ConnectionLink (methods, no per-connection closures).
  get connectionId(): number {
    return this.id
  }

  get user(): Effect.Effect<Option.Option<string>> {
    return Effect.sync(() => Option.fromNullable(this.userName))
  }

  offer(from: ServiceInstance, info: unknown): Effect.Effect<boolean> {
    return Effect.suspend(() => {
      const inbox = this.openInbox()
      return inbox === undefined ? Effect.succeed(false) : inbox.offer({ _tag: "Info", from, info })
    })
  }

  unsafeOffer(from: ServiceInstance, info: unknown): boolean {
    return this.openInbox()?.unsafeOffer({ _tag: "Info", from, info }) ?? false
  }

  fork<A, E>(effect: Effect.Effect<A, E>): Effect.Effect<Fiber.RuntimeFiber<A, E>> {
    return Effect.suspend(() => {
      this.forks++
      return Effect.flatMap(this.openFibers(), (fibers) => FiberSet.run(fibers, effect))
    })
  }

  info(): ConnectionInfo {
    return {
      id: this.id,
      peer: this.peer,
      user: this.userName,
      secure: this.secure,
      streaming: this.streaming !== undefined,
      pendingFrames: this.pending.length - this.head,
      bufferedBytes: this.out.size + (this.closed ? 0 : this.socket.writableLength),
      readPaused: this.readPaused,
      writeBlocked: this.writeBlocked
    }
  }

  private openInbox(): Inbox<Envelope> | undefined {
    if (this.finished) return undefined
    if (this.inbox === undefined) this.inbox = new Inbox(this.state.config.mailboxCapacity, () => this.wake())
    return this.inbox
  }

  /** The fibers forked with `ctx.fork`, in a scope closed with the connection (made on first use). */
  private openFibers(): Effect.Effect<FiberSet.FiberSet<unknown, unknown>> {
    if (this.fibers !== undefined) return Effect.succeed(this.fibers.set)
    return Effect.gen(this, function*() {
      const scope = yield* Scope.make()
      const set = yield* Scope.extend(FiberSet.make<unknown, unknown>(), scope)
      if (this.finished) {
        yield* Scope.close(scope, Exit.void)
      } else {
        this.fibers = { set, scope }
      }
      return set
    })
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
    if (this.waiter !== undefined || this.parked) this.serveInline()
    if (this.hasWork()) this.wake()
  }

  /**
   * The fast path: while the connection fiber is idle, frames whose services answer with plain values are served
   * right here in the socket callback and their replies written at once (no fiber hop). The first step that needs
   * an Effect (an Effect result, a stream, security, a defect) is handed to the fiber, which goes on from there,
   * so requests are still served strictly in order.
   */
  private serveInline(): void {
    if (this.streaming !== undefined || this.handoff !== undefined || this.writeBlocked || this.closed) return
    if (!this.hasFrames()) return
    this.activity++
    try {
      const step = this.processFrames()
      if (step !== "Continue") this.handoff = step
      this.recordCounts()
      this.writeOut()
    } catch (defect) {
      this.handoff = Effect.die(defect)
    }
  }

  private readonly onEnd = (): void => {
    this.eof = true
    this.wake()
  }

  private readonly onClose = (): void => {
    this.closed = true
    this.wake()
    // The client is gone: whatever the connection was doing for it is cancelled.
    this.fiber?.unsafeInterruptAsFork(FiberId.none)
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
    } else if (this.parked && !this.finished) {
      this.parked = false
      this.state.runFork(this.session())
    }
  }

  /** Starts serving: parked until the first event when there is no idle timeout to keep, else in a fiber. */
  start(): void {
    this.parked = true
    if (this.state.config.idleTimeout !== undefined || this.hasWork()) this.wake()
  }

  /** One run of the connection's fiber: until it parks (idle) or the connection is over (then torn down). */
  private session(): Effect.Effect<void> {
    return Effect.withFiberRuntime<void>((fiber) => {
      this.fiber = fiber
      return this.loop().pipe(
        Effect.onExit((exit) => {
          if (this.fiber === fiber) this.fiber = undefined
          return Exit.isSuccess(exit) && exit.value === "Park" ? Effect.void : this.finish(exit)
        }),
        Effect.catchAllCause((cause) =>
          Cause.isInterruptedOnly(cause) ? Effect.void : Effect.logError("PB connection failed", cause)
        )
      )
    })
  }

  /** Server shutdown: interrupts the connection's fiber, or tears a parked connection down directly. */
  shutdown(): Effect.Effect<void> {
    return Effect.suspend(() => {
      if (this.finished) return Effect.void
      const fiber = this.fiber
      if (fiber !== undefined) return Effect.zipRight(Fiber.interrupt(fiber), this.shutdown())
      this.parked = false
      return this.finish(Exit.interrupt(FiberId.none))
    })
  }

  /** Tears the connection down and unregisters it. */
  private finish(exit: Exit.Exit<unknown, unknown>): Effect.Effect<void> {
    return Effect.zipRight(
      this.teardown(exit),
      Effect.sync(() => {
        const connections = this.state.connections
        if (connections.get(this.id) === this) {
          connections.delete(this.id)
          Metrics.connectionsActive.unsafeUpdate(connections.size, [])
        }
      })
    )
  }

  private hasFrames(): boolean {
    return this.head < this.pending.length
  }

  private hasWork(): boolean {
    return this.hasFrames() || this.problem !== undefined || this.eof || this.closed || this.writeBlocked ||
      this.handoff !== undefined || (this.inbox !== undefined && this.inbox.size > 0)
  }

  /** Suspends until there is something to do. */
  private waitForWork(): Effect.Effect<void> {
    return Effect.async<void>((resume) => {
      if (this.hasWork()) return resume(Effect.void)
      this.waiter = resume
      return Effect.sync(() => {
        if (this.waiter === resume) this.waiter = undefined
      })
    })
  }

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
  // Metrics
  // -------------------------------------------------------------------------------------------------------------

  private countRequest(code: number): void {
    const at = this.requestCodes.indexOf(code)
    if (at >= 0) {
      this.requestCounts[at]!++
    } else {
      this.requestCodes.push(code)
      this.requestCounts.push(1)
    }
  }

  private countError(kind: Metrics.ErrorKind, n = 1): void {
    const counts = this.errorCounts ??= new Map()
    counts.set(kind, (counts.get(kind) ?? 0) + n)
  }

  /**
   * Records the counts gathered since the last call, and the batch's latency: one `pb_request_duration_ms`
   * observation per batch (the requests served in one turn, whose replies are written together), from the first
   * request's dispatch to now (its replies are queued and about to be written).
   */
  private recordCounts(): void {
    if (this.batchStarted >= 0) {
      Metrics.requestDuration.unsafeUpdate(performance.now() - this.batchStarted, [])
      this.batchStarted = -1
    }
    if (this.requestCodes.length > 0) {
      for (let i = 0; i < this.requestCodes.length; i++) {
        Metrics.recordRequests(this.requestCodes[i]!, this.requestCounts[i]!)
      }
      this.requestCodes = []
      this.requestCounts = []
    }
    if (this.errorCounts !== undefined) {
      for (const [kind, count] of this.errorCounts) Metrics.recordErrors(kind, count)
      this.errorCounts = undefined
    }
  }

  // -------------------------------------------------------------------------------------------------------------
  // Writing
  // -------------------------------------------------------------------------------------------------------------

  private sendError(text: string, kind: Metrics.ErrorKind): void {
    this.out.push(errorText(text))
    this.countError(kind)
  }

  /** Writes everything buffered in one go. */
  private writeOut(): void {
    if (this.out.size === 0 || this.closed) return
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

  /** Writes everything buffered in one go, then waits until the socket has drained it. */
  private flush(): Effect.Effect<void> {
    return Effect.suspend(() => {
      this.writeOut()
      return this.writeBlocked ? this.awaitDrain() : Effect.void
    })
  }

  private awaitDrain = (): Effect.Effect<void> => Effect.async<void>((resume) => {
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

  // -------------------------------------------------------------------------------------------------------------
  // The loop
  // -------------------------------------------------------------------------------------------------------------

  /** Serves the connection until it is over ("Done") or idle without an idle timeout to keep ("Park"). */
  private loop(): Effect.Effect<"Park" | "Done"> {
    return Effect.gen(this, function*() {
      while (!this.closed) {
        // The same rule after every step, whether its replies were computed synchronously or by an Effect: write
        // once `flushBytes` are ready, and serve nothing more until the socket has drained what was written.
        if (this.out.size >= this.state.config.flushBytes) this.writeOut()
        if (this.writeBlocked) yield* this.flush()
        if (this.handoff !== undefined) {
          const step = this.handoff
          this.handoff = undefined
          const next = typeof step === "string" ? step : yield* step
          if (next === "Close") return yield* this.flushDone()
          continue
        }
        if (this.streaming !== undefined) {
          if ((yield* this.streamStep()) === "Close") return yield* this.flushDone()
          continue
        }
        // Messages for a stream that is over (or that never started): dropped, as riak drops them.
        if (this.inbox !== undefined && this.inbox.size > 0) this.inbox.takeAll()
        if (this.hasFrames()) {
          const step = this.processFrames()
          const next = typeof step === "string" ? step : yield* step
          if (next === "Close") return yield* this.flushDone()
          continue
        }
        this.recordCounts()
        yield* this.flush()
        if (this.problem !== undefined) {
          yield* this.handleProblem(this.problem)
          return "Done" as const
        }
        if (this.eof) return "Done" as const
        this.resume()
        const idle = this.state.config.idleTimeout
        if (idle === undefined) {
          if (this.hasWork()) continue
          // Parked in the same synchronous step as the check: the next socket event serves inline or restarts a fiber.
          this.parked = true
          return "Park" as const
        } else {
          // Requests served inline count as activity: the connection is idle only if there were none.
          const activity = this.activity
          if (Option.isNone(yield* Effect.timeoutOption(this.waitForWork(), idle)) && this.activity === activity) {
            return "Done" as const
          }
        }
      }
      return "Done" as const
    })
  }

  private flushDone(): Effect.Effect<"Done"> {
    return Effect.as(this.flush(), "Done" as const)
  }

  /** Serves pending frames while their results are known synchronously. */
  private processFrames(): Step {
    while (this.hasFrames() && this.streaming === undefined) {
      const step = this.handleFrame(this.takeFrame())
      if (step !== "Continue") return step
      if (this.out.size >= this.state.config.flushBytes) return Effect.as(this.flush(), "Continue")
    }
    return "Continue"
  }

  private handleProblem(problem: FrameProblem): Effect.Effect<void> {
    if (problem._tag === "Empty") return Effect.void
    this.sendError(Texts.frameTooLarge(problem.length, this.state.config.maxFrameSize), "oversized_frame")
    this.recordCounts()
    return this.flush()
  }

  // -------------------------------------------------------------------------------------------------------------
  // Requests
  // -------------------------------------------------------------------------------------------------------------

  private handleFrame(frame: Frame): Step {
    switch (this.securityState) {
      case "Off":
        if (frame.code === CODE_START_TLS) {
          this.sendError(Texts.startTlsWhileOff, "security")
          return "Continue"
        }
        return this.dispatch(frame)
      case "Authenticated":
        return this.dispatch(frame)
      case "AwaitStartTls":
        if (frame.code === CODE_START_TLS) return this.startTls()
        this.sendError(Texts.startTlsFirst, "security")
        return "Continue"
      case "AwaitAuth":
        if (frame.code === CODE_AUTH_REQ) return this.authenticate(frame)
        this.sendError(Texts.authenticateFirst, "security")
        return "Continue"
    }
  }

  private dispatch(frame: Frame): Step {
    this.countRequest(frame.code)
    const service = this.state.registry.unsafeLookup(frame.code)
    if (service === undefined) {
      this.sendError(Texts.unknownCode(frame.code), "unknown_code")
      return "Continue"
    }
    const instance = this.instances?.get(service)
    if (instance !== undefined) return this.decodeStage(instance, frame)
    return Effect.flatMap(Effect.exit(service.open(this)), (opened) => {
      if (Exit.isFailure(opened)) return this.defect(opened.cause, service, frame.code, false)
      ;(this.instances ??= new Map()).set(service, opened.value)
      return toEffect(this.decodeStage(opened.value, frame))
    })
  }

  private decodeStage(instance: ServiceInstance, frame: Frame): Step {
    let decoded: ReturnType<ServiceInstance["decode"]>
    try {
      decoded = instance.decode(frame.code, frame.body)
    } catch (thrown) {
      return this.defect(Cause.die(thrown), instance.service, frame.code, false)
    }
    if (decoded._tag === "DecodeFailed") {
      this.sendError(Texts.decodeError(decoded.reason), "decode")
      return "Continue"
    }
    const security = this.state.config.security
    const permission = decoded.permission
    if (permission === undefined || security === undefined) {
      return this.processStage(instance, decoded.message, frame.code)
    }
    const user = this.userName ?? ""
    const message = decoded.message
    return Effect.flatMap(security.authorizer.check(user, permission), (allowed) => {
      if (allowed) return toEffect(this.processStage(instance, message, frame.code))
      this.sendError(Texts.permissionDenied(user, permission.permission, permission.target), "permission")
      return Effect.succeed("Continue" as const)
    })
  }

  private processStage(instance: ServiceInstance, message: unknown, code: number): Step {
    // Latency is timed per batch (one clock read when the batch's first request is dispatched, one when its counts
    // are recorded): a clock read pair and a histogram update per request were ~6 % of the server's CPU.
    if (this.batchStarted < 0) this.batchStarted = performance.now()
    let result: ReturnType<ServiceInstance["process"]>
    try {
      result = instance.process(message)
    } catch (thrown) {
      return this.defect(Cause.die(thrown), instance.service, code, false)
    }
    // A plain result (checked by tag first: cheaper than isEffect, and no Effect has these tags).
    if (isProcessResult(result) || !Effect.isEffect(result)) return this.afterProcess(result, instance, code)
    return Effect.flatMap(Effect.exit(result), (exit) =>
      Exit.isFailure(exit)
        ? this.handleFailure(exit.cause, instance, code, false)
        : toEffect(this.afterProcess(exit.value, instance, code)))
  }

  private afterProcess(
    result: ProcessResult<unknown, unknown, unknown>,
    instance: ServiceInstance,
    code: number
  ): Step {
    let step: Step = "Continue"
    switch (result._tag) {
      case "Reply":
        step = this.sendReplies(instance, result.replies, code, false)
        break
      case "Failure":
        this.sendError(renderText(result.error), "process")
        break
      case "StartStream":
        if (instance.streams) this.streaming = { _tag: "Mailbox", instance, reqId: result.reqId }
        else this.unexpected(result)
        break
      case "ReplyStream":
        step = this.startEffectStream(instance, result.stream)
        break
      default:
        this.unexpected(result)
    }
    if (this.streaming === undefined && this.forks > 0) return Effect.zipLeft(toEffect(step), this.clearForks())
    return step
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
      this.sendError(renderText(failure.value.error), "process")
      return Effect.succeed("Continue")
    }
    if (Cause.isInterruptedOnly(cause)) return Effect.interrupt
    return this.defect(cause, instance.service, code, inStream)
  }

  private defect(cause: Cause.Cause<unknown>, service: PbService, code: number, inStream: boolean): Effect.Effect<Next> {
    this.sendError(inStream ? Texts.streamDefect : Texts.defect, "defect")
    return Effect.logError(`PB service ${service.name} failed; closing connection ${this.id}`, cause).pipe(
      Effect.annotateLogs({ service: service.name, code, connection: this.id }),
      Effect.as("Close" as const)
    )
  }

  private unexpected(result: unknown): void {
    this.sendError(Texts.unknownResponse(result), "unexpected_result")
  }

  private sendReplies(instance: ServiceInstance, replies: Iterable<unknown>, code: number, inStream: boolean): Step {
    for (const reply of replies) {
      let encoded: Either.Either<Encoded, unknown>
      try {
        encoded = instance.encode(reply)
      } catch (thrown) {
        return this.defect(Cause.die(thrown), instance.service, code, inStream)
      }
      if (Either.isRight(encoded) && this.out.push(encoded.right)) {
        // queued
      } else {
        this.sendError(Texts.noEncoding, "encode")
      }
    }
    return "Continue"
  }

  private clearForks(): Effect.Effect<void> {
    this.forks = 0
    return this.fibers === undefined ? Effect.void : FiberSet.clear(this.fibers.set)
  }

  // -------------------------------------------------------------------------------------------------------------
  // Streams
  // -------------------------------------------------------------------------------------------------------------

  private startEffectStream(instance: ServiceInstance, replies: Stream.Stream<unknown, PbServiceError>): Step {
    const token = {}
    const offer = (envelope: Envelope) =>
      Effect.suspend(() => this.openInbox()?.offer(envelope) ?? Effect.succeed(false))
    const runner = Stream.runForEachChunk(replies, (chunk) => offer({ _tag: "Chunk", token, replies: chunk })).pipe(
      Effect.matchCauseEffect({
        onSuccess: () => offer({ _tag: "End", token }),
        onFailure: (cause) => {
          if (Cause.isInterruptedOnly(cause)) return Effect.succeed(false)
          const failure = Cause.failureOption(cause)
          return Option.isSome(failure) && !Cause.isDie(cause)
            ? offer({ _tag: "Fail", token, error: failure.value })
            : offer({ _tag: "Defect", token, cause })
        }
      })
    )
    this.streaming = { _tag: "Effect", instance, token }
    return Effect.as(this.fork(runner), "Continue")
  }

  private endStream(): Effect.Effect<void> {
    this.streaming = undefined
    return this.forks > 0 ? this.clearForks() : Effect.void
  }

  private streamStep(): Effect.Effect<Next> {
    return Effect.gen(this, function*() {
      const streaming = this.streaming!
      if (this.hasFrames() || this.problem !== undefined) {
        this.sendError(Texts.requestDuringStream, "request_during_stream")
        this.recordCounts()
        return "Close" as const
      }
      if (this.eof) return "Close" as const
      const batch = this.inbox === undefined ? [] : this.inbox.takeAll()
      if (batch.length === 0) {
        this.recordCounts()
        yield* this.flush()
        const timeout = this.state.config.streamIdleTimeout
        if (timeout === undefined) {
          yield* this.waitForWork()
        } else if (Option.isNone(yield* Effect.timeoutOption(this.waitForWork(), timeout))) {
          this.sendError(Texts.streamTimeout, "stream_timeout")
          yield* this.endStream()
        }
        return "Continue" as const
      }
      for (const envelope of batch) {
        if (this.streaming !== streaming) break // the stream ended: the rest is dropped
        const step = this.handleEnvelope(streaming, envelope)
        const next = typeof step === "string" ? step : yield* step
        if (next === "Close") return next
        if (this.out.size >= this.state.config.flushBytes) yield* this.flush()
      }
      return "Continue" as const
    })
  }

  private handleEnvelope(streaming: Streaming, envelope: Envelope): Step {
    if (streaming._tag === "Mailbox") {
      if (envelope._tag !== "Info" || envelope.from !== streaming.instance) return "Continue"
      const instance = streaming.instance
      let result: ReturnType<ServiceInstance["processStream"]>
      try {
        result = instance.processStream(envelope.info, streaming.reqId)
      } catch (thrown) {
        return this.defect(Cause.die(thrown), instance.service, -1, true)
      }
      if (!Effect.isEffect(result)) return this.afterStreamResult(result, instance)
      return Effect.flatMap(Effect.exit(result), (exit) => {
        if (Exit.isSuccess(exit)) return toEffect(this.afterStreamResult(exit.value, instance))
        return Effect.flatMap(this.handleFailure(exit.cause, instance, -1, true), (next) =>
          next === "Close" ? Effect.succeed(next) : Effect.as(this.endStream(), next))
      })
    }
    if (envelope._tag === "Info" || envelope.token !== streaming.token) return "Continue"
    switch (envelope._tag) {
      case "Chunk":
        return this.sendReplies(streaming.instance, envelope.replies, -1, true)
      case "End":
        return Effect.as(this.endStream(), "Continue")
      case "Fail":
        this.sendError(renderText(envelope.error.error), "process")
        return Effect.as(this.endStream(), "Continue")
      case "Defect":
        return this.defect(envelope.cause, streaming.instance.service, -1, true)
    }
  }

  private afterStreamResult(result: StreamResult<unknown, unknown>, instance: ServiceInstance): Step {
    switch (result._tag) {
      case "Reply":
        return this.sendReplies(instance, result.replies, -1, true)
      case "Ignore":
        return "Continue"
      case "Done": {
        const step = this.sendReplies(instance, result.replies, -1, true)
        return step === "Continue" ? Effect.as(this.endStream(), step) : step
      }
      case "Failure":
        this.sendError(renderText(result.error), "process")
        return Effect.as(this.endStream(), "Continue")
      default:
        this.unexpected(result)
        return Effect.as(this.endStream(), "Continue")
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
        this.countError("tls")
        return "Close" as const
      }
      // Stop reading before the ack goes out: the client's ClientHello may follow it at once, and it belongs to
      // the TLS socket. Paused, whatever arrives stays in the socket's buffer, and the TLS socket reads what is
      // buffered first. The ack (after any replies still buffered) is written straight away.
      const raw = this.socket
      raw.pause()
      this.detach(raw)
      this.readPaused = false
      this.out.push(Uint8Array.of(CODE_START_TLS))
      this.writeOut()
      this.writeBlocked = false
      if (this.closed || raw.destroyed) return "Close" as const
      const upgraded = yield* Effect.async<NodeTls.TLSSocket, Error>((resume) => {
        const tlsSocket = new NodeTls.TLSSocket(raw, {
          isServer: true,
          secureContext: security.secureContext,
          requestCert: security.requestCert,
          rejectUnauthorized: security.rejectUnauthorized
        })
        const onSecure = () => {
          tlsSocket.off("error", onFailure)
          tlsSocket.off("close", onClose)
          resume(Effect.succeed(tlsSocket))
        }
        const onFailure = (error: Error) => {
          tlsSocket.off("secure", onSecure)
          tlsSocket.off("close", onClose)
          resume(Effect.fail(error))
        }
        const onClose = () => onFailure(new Error("closed during the TLS handshake"))
        tlsSocket.once("secure", onSecure)
        tlsSocket.once("error", onFailure)
        tlsSocket.once("close", onClose)
        // Errors after the handshake come with 'close'; this keeps them from being unhandled.
        tlsSocket.on("error", () => {})
        return Effect.sync(() => tlsSocket.destroy())
      }).pipe(
        Effect.timeoutFail({ duration: security.handshakeTimeout, onTimeout: () => new Error("TLS handshake timed out") }),
        Effect.either
      )
      if (Either.isLeft(upgraded)) {
        yield* Effect.logDebug(`TLS handshake failed on connection ${this.id}`, upgraded.left)
        this.countError("tls")
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
        this.sendError(Texts.decodeError("invalid RpbAuthReq"), "decode")
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
        this.userName = request.user
        this.authFailures = 0
        this.securityState = "Authenticated"
        this.out.push(Uint8Array.of(CODE_AUTH_RESP))
        return "Continue" as const
      }
      this.authFailures++
      yield* Effect.sleep(security.authFailureDelay)
      this.sendError(Texts.authenticationFailed, "authentication")
      return this.authFailures >= security.maxAuthFailures ? "Close" as const : "Continue" as const
    })
  }

  // -------------------------------------------------------------------------------------------------------------
  // Teardown
  // -------------------------------------------------------------------------------------------------------------

  /** Releases the socket: a graceful end after a normal finish, a destroy when interrupted (server shutdown). */
  teardown(exit: Exit.Exit<unknown, unknown>): Effect.Effect<void> {
    return Effect.suspend(() => {
      this.finished = true
      const fibers = this.fibers
      const closeFibers = fibers === undefined ? Effect.void : Scope.close(fibers.scope, Exit.void)
      return Effect.zipRight(closeFibers, this.release(exit))
    })
  }

  private release(exit: Exit.Exit<unknown, unknown>): Effect.Effect<void> {
    return Effect.sync(() => {
      this.finished = true
      this.inbox?.close()
      this.recordCounts()
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

/**
 * Takes one accepted socket: registers the connection and starts serving it (parked: an idle connection has no
 * fiber). Never fails: everything is answered on the wire or logged.
 */
export const accept = (raw: Net.Socket, state: ServerState): void => {
  if (state.stopping) {
    raw.destroy()
    return
  }
  const id = ++state.nextId
  Metrics.connectionsAccepted.unsafeUpdate(1, [])
  const config = state.config
  if (config.maxConnections !== undefined && state.connections.size >= config.maxConnections) {
    Metrics.recordErrors("too_many_connections", 1)
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
  const connection = new Connection(id, raw, state)
  state.connections.set(id, connection)
  Metrics.connectionsActive.unsafeUpdate(state.connections.size, [])
  connection.attach(raw)
  connection.start()
}

const frameOf = (payload: Uint8Array): Uint8Array => {
  const out = new Uint8Array(payload.length + 4)
  new DataView(out.buffer).setUint32(0, payload.length)
  out.set(payload, 4)
  return out
}
