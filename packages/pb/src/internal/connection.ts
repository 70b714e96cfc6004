/**
 * One PB connection: riak's `riak_api_pb_server` process, as a fiber supervised by the server.
 *
 * The fiber is the connection's only actor: it serves frames, runs streams and writes replies. Its behaviour state
 * (service instances, security phase, stream) is in a `Ref`; the I/O plumbing (frames cut from socket events,
 * replies waiting to be written, read pacing) is plain fields, touched synchronously by socket events and the fiber.
 * The fiber lives in its own Scope, whose finalizer closes the socket.
 *
 * Backpressure is one rule for every path: after each step, replies are written once `flushBytes` are ready, and
 * nothing more is served until the socket has drained what was written. Reading pauses when `readBufferBytes` of
 * frames wait unprocessed or when the server-wide byte budget is spent; it does not pause merely because output is
 * blocked, so a client that stops reading and then closes or resets is noticed at once.
 */
import { Suspend } from "@warren/process"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import type * as Fiber from "effect/Fiber"
import * as FiberSet from "effect/FiberSet"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Scope from "effect/Scope"
import type * as Net from "node:net"
import type * as NodeTls from "node:tls"
import type { PbServiceError, Peer } from "../PbService.js"
import { errorText } from "./errors.js"
import type { Frame, FrameProblem } from "./frame.js"
import { FrameDecoder, OutBuffer } from "./frame.js"
import { Inbox } from "./inbox.js"
import type { ConnectionLink, ServiceInstance } from "./instance.js"
import type { ServerContext } from "./listener.js"
import * as Metrics from "./metrics.js"
import { ServingLoop, WOKEN } from "./serving.js"
import type { ConnectionInfo, ConnectionState, Envelope } from "./state.js"

export class Connection implements ConnectionLink {
  socket: Net.Socket | NodeTls.TLSSocket
  readonly peer: Peer
  /** The behaviour state; `state` is its value as of the fiber's last write (only the fiber writes it). */
  state: ConnectionState
  /** The connection's fiber, interrupted when the peer closes or resets. */
  fiber: Fiber.RuntimeFiber<unknown, unknown> | undefined = undefined
  readonly decoder: FrameDecoder
  private pending: Array<Frame> = []
  private head = 0
  private pendingBytes = 0
  problem: FrameProblem | undefined = undefined
  eof = false
  closed = false
  private finished = false
  readonly out = new OutBuffer()
  writeBlocked = false
  private readPaused = false
  private waiter: ((effect: Effect.Effect<void>) => void) | undefined = undefined
  /** The serving loop's waiter, resumed with `WOKEN` (serving.ts). */
  private loopWaiter: ((effect: Effect.Effect<unknown, PbServiceError>) => void) | undefined = undefined
  /**
   * Counts requests served and writes drained; the idle sweep notes when it changes (`lastActivity`, clock time in
   * ms), so serving reads no clock.
   */
  activity = 0
  private seenActivity = 0
  private lastActivity: number
  idleExpired = false
  /** Bytes charged to the server's budget. */
  private charged = 0
  secure = false
  inbox: Inbox<Envelope> | undefined = undefined
  forks = 0
  private fibers: FiberSet.FiberSet<unknown, unknown> | undefined = undefined
  /** Metrics counted per request, recorded once per batch. */
  readonly counts = new Metrics.BatchCounts()
  private readonly serving: ServingLoop = new ServingLoop(this)

  constructor(
    readonly id: number,
    raw: Net.Socket,
    readonly server: ServerContext,
    readonly ref: Ref.Ref<ConnectionState>,
    /** The connection's Scope (the supervisor's, for this child): forked fibers live in a scope under it. */
    private readonly scope: Scope.Scope,
    initial: ConnectionState
  ) {
    this.socket = raw
    this.peer = { address: raw.remoteAddress ?? "", port: raw.remotePort ?? 0 }
    this.decoder = new FrameDecoder(server.config.maxFrameSize)
    this.state = initial
    this.lastActivity = server.clock.unsafeCurrentTimeMillis()
  }

  /** Replaces the behaviour state (the fiber only). */
  setState(next: ConnectionState): Effect.Effect<void> {
    this.state = next
    return Ref.set(this.ref, next)
  }

  // The connection is its services' ConnectionLink (methods, no per-connection closures).
  get connectionId(): number {
    return this.id
  }

  get user(): Effect.Effect<Option.Option<string>> {
    return Effect.map(
      Ref.get(this.ref),
      (state) => state.security._tag === "Authenticated" ? Option.some(state.security.user) : Option.none()
    )
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

  get info(): Effect.Effect<ConnectionInfo> {
    return Effect.map(Ref.get(this.ref), (state) => ({
      id: this.id,
      peer: this.peer,
      user: state.security._tag === "Authenticated" ? state.security.user : undefined,
      secure: this.secure,
      streaming: state.streaming !== undefined,
      pendingFrames: this.pending.length - this.head,
      bufferedBytes: this.held(),
      readPaused: this.readPaused,
      writeBlocked: this.writeBlocked
    }))
  }

  openInbox(): Inbox<Envelope> | undefined {
    if (this.finished) return undefined
    if (this.inbox === undefined) this.inbox = new Inbox(this.server.config.mailboxCapacity, () => this.wake())
    return this.inbox
  }

  /** The fibers forked with `ctx.fork`: a FiberSet in a scope under the connection's (made on first use). */
  private openFibers(): Effect.Effect<FiberSet.FiberSet<unknown, unknown>> {
    if (this.fibers !== undefined) return Effect.succeed(this.fibers)
    return Effect.gen(this, function*() {
      const child = yield* Scope.fork(this.scope, ExecutionStrategy.sequential)
      const set = yield* Scope.extend(FiberSet.make<unknown, unknown>(), child)
      this.fibers = set
      return set
    })
  }

  /** Interrupts the fibers forked for the request that just finished. */
  clearForks(): Effect.Effect<void> {
    this.forks = 0
    return this.fibers === undefined ? Effect.void : FiberSet.clear(this.fibers)
  }

  // -------------------------------------------------------------------------------------------------------------
  // Socket events
  // -------------------------------------------------------------------------------------------------------------

  private readonly onData = (chunk: Buffer): void => {
    const before = this.pending.length
    const problem = this.decoder.push(chunk, this.pending)
    for (let i = before; i < this.pending.length; i++) this.pendingBytes += this.pending[i]!.body.length + 5
    if (problem !== undefined) this.problem = problem
    // The fiber (run at once by the eager scheduler when it is waiting) serves first; what it leaves is then
    // charged to the budget and paces reading.
    if (this.pending.length > before || problem !== undefined) this.wake()
    this.account()
    this.updateReading()
  }

  private readonly onEnd = (): void => {
    this.eof = true
    this.wake()
  }

  private readonly onClose = (): void => {
    this.closed = true
    this.wake()
    // The client is gone: whatever the connection was doing for it is cancelled.
    const fiber = this.fiber
    if (fiber !== undefined && !this.finished) fiber.unsafeInterruptAsFork(fiber.id())
  }

  private readonly onError = (): void => {
    // 'close' follows; the error itself is the peer's business.
  }

  private readonly onDrain = (): void => {
    if (!this.writeBlocked) return
    this.writeBlocked = false
    this.activity++
    this.account()
    this.wake()
  }

  attach(socket: Net.Socket | NodeTls.TLSSocket): void {
    this.socket = socket
    socket.on("data", this.onData)
    socket.on("end", this.onEnd)
    socket.on("close", this.onClose)
    socket.on("error", this.onError)
    socket.on("drain", this.onDrain)
    if (socket.destroyed) this.onClose()
  }

  detach(socket: Net.Socket | NodeTls.TLSSocket): void {
    socket.off("data", this.onData)
    socket.off("end", this.onEnd)
    socket.off("close", this.onClose)
    socket.off("error", this.onError)
    socket.off("drain", this.onDrain)
    this.server.budget.cancel(this.onRoom)
  }

  /** Stops the socket's reads for STARTTLS (the TLS socket takes over what is buffered). */
  stopReading(): void {
    this.readPaused = false
    this.server.budget.cancel(this.onRoom)
  }

  // -------------------------------------------------------------------------------------------------------------
  // Pacing: the byte budget and the read rule
  // -------------------------------------------------------------------------------------------------------------

  private held(): number {
    const socket = this.closed ? 0 : this.socket.writableLength
    return this.pendingBytes + this.decoder.partialBytes + this.out.size + socket
  }

  /** Brings this connection's share of the server's budget up to date. */
  account(): void {
    const held = this.finished ? 0 : this.held()
    const delta = held - this.charged
    if (delta !== 0) {
      this.charged = held
      this.server.budget.add(delta)
    }
  }

  private readonly onRoom = (): void => this.updateReading()

  /** Reads pause while frames wait unprocessed past `readBufferBytes`, after a framing problem, or over budget. */
  updateReading(): void {
    if (this.finished) return
    const budget = this.server.budget
    const overBudget = budget.exhausted
    const pause = this.problem !== undefined || this.pendingBytes >= this.server.config.readBufferBytes || overBudget
    if (pause) {
      if (!this.readPaused) {
        this.readPaused = true
        this.socket.pause()
      }
      if (overBudget) budget.onRoom(this.onRoom)
    } else if (this.readPaused) {
      this.readPaused = false
      this.socket.resume()
    }
  }

  // -------------------------------------------------------------------------------------------------------------
  // Waiting
  // -------------------------------------------------------------------------------------------------------------

  wake(): void {
    const loopWaiter = this.loopWaiter
    if (loopWaiter !== undefined) {
      this.loopWaiter = undefined
      return loopWaiter(WOKEN)
    }
    const waiter = this.waiter
    if (waiter !== undefined) {
      this.waiter = undefined
      waiter(Effect.void)
    }
  }

  hasFrames(): boolean {
    return this.head < this.pending.length
  }

  private hasWork(): boolean {
    return this.hasFrames() || this.problem !== undefined || this.eof || this.closed || this.idleExpired ||
      (this.inbox !== undefined && this.inbox.size > 0)
  }

  /**
   * Suspends until there is something to do (one Effect, built once: waiting allocates nothing of ours). No
   * canceler: Effect wraps a canceler in an interruption region that costs run-loop steps on every wait; a waiter
   * left behind by an interruption is replaced by the next wait, or resumes a fiber that is gone (a no-op).
   */
  readonly waitForWork: Effect.Effect<void> = Suspend.make<void>((resume) => {
    if (this.hasWork()) return resume(Effect.void)
    this.waiter = resume
  })

  /** The serving loop's wait: `resume` gets `WOKEN` once there is something to do. */
  awaitWork(resume: (effect: Effect.Effect<unknown, PbServiceError>) => void): void {
    if (this.hasWork()) return resume(WOKEN)
    this.loopWaiter = resume
  }

  /** Suspends until the socket has drained (or closed, or the connection idled out). */
  readonly awaitDrain: Effect.Effect<void> = Suspend.make<void>((resume) => {
    if (!this.writeBlocked || this.closed || this.idleExpired) return resume(Effect.void)
    if (!this.socket.writableNeedDrain) {
      this.writeBlocked = false
      return resume(Effect.void)
    }
    this.waiter = resume
  })

  /**
   * The idle sweep: a connection with no request, no drained write and no stream for `idleMs` is closed (after
   * its buffered replies, like a client's FIN). A stream has its own timeout; a request being served is not idle.
   */
  checkIdle(now: number, idleMs: number): void {
    if (this.activity !== this.seenActivity) {
      this.seenActivity = this.activity
      this.lastActivity = now
      return
    }
    const waiting = this.waiter !== undefined || this.loopWaiter !== undefined
    if (!waiting || this.state.streaming !== undefined) return
    if (now - this.lastActivity >= idleMs) {
      this.idleExpired = true
      this.wake()
    }
  }

  takeFrame(): Frame {
    const frame = this.pending[this.head++]!
    this.pendingBytes -= frame.body.length + 5
    if (this.head === this.pending.length) {
      this.pending = []
      this.head = 0
    }
    return frame
  }

  countRequest(code: number): void {
    this.counts.request(code)
  }

  countError(kind: Metrics.ErrorKind): void {
    this.counts.error(kind)
  }

  /** Records the batch's counts and latency (see `Metrics.BatchCounts`). */
  recordCounts(): void {
    this.counts.record()
  }

  // -------------------------------------------------------------------------------------------------------------
  // Writing
  // -------------------------------------------------------------------------------------------------------------

  sendError(text: string, kind: Metrics.ErrorKind): void {
    this.out.push(errorText(text))
    this.countError(kind)
  }

  /** Writes everything buffered in one go. */
  writeOut(): void {
    if (this.out.size === 0 || this.closed) return
    const socket = this.socket
    const one = this.out.takeSmall()
    let ok: boolean
    if (one !== undefined) {
      ok = socket.write(one)
    } else {
      socket.cork()
      ok = true
      for (const piece of this.out.take()) ok = socket.write(piece)
      socket.uncork()
    }
    if (!ok) this.writeBlocked = true
    this.account()
  }

  /** Writes everything buffered, then waits until the socket has drained it. */
  flush(): Effect.Effect<void> {
    return Effect.suspend(() => {
      this.writeOut()
      return this.writeBlocked ? this.awaitDrain : Effect.void
    })
  }

  // -------------------------------------------------------------------------------------------------------------
  // The loop (serving.ts)
  // -------------------------------------------------------------------------------------------------------------

  /** Serves the connection until it is over. */
  loop(): Effect.Effect<void, PbServiceError> {
    return this.serving.effect
  }

  /** Joins a service's Effect to the loop (dispatch.ts): the loop runs it next and answers with its outcome. */
  join(effect: Effect.Effect<unknown, PbServiceError>, instance: ServiceInstance, code: number): "Joined" {
    return this.serving.join(effect, instance, code)
  }

  /** The loop is serving frames: whatever wait was interrupted, the fiber is serving now. */
  busy(): void {
    this.waiter = undefined
    this.loopWaiter = undefined
    this.activity++
  }

  // -------------------------------------------------------------------------------------------------------------
  // Teardown
  // -------------------------------------------------------------------------------------------------------------

  /**
   * Ends the connection's life before its socket is released (listener.ts): later offers are refused, the last
   * counts recorded, the socket's events let go and its bytes returned to the budget.
   */
  finish(): Net.Socket | NodeTls.TLSSocket {
    this.finished = true
    this.inbox?.close()
    this.recordCounts()
    const socket = this.socket
    this.detach(socket)
    socket.on("error", () => {})
    this.account()
    return socket
  }
}
