/**
 * A connection's serving loop: what its fiber runs from its start to its end (connection.ts holds the plumbing it
 * serves from and writes to).
 *
 * The loop is one `whileLoop`, its frame pushed once: `body` serves synchronously what it can and returns the
 * Effect to run next (a wait, a drain, a step of a stream, a service's Effect, or the end); when that Effect
 * succeeds, `afterBody` takes its value and the next `body` runs in the same run-loop op. The wait is Effect's bare
 * `Async` step (`Suspend`) and is resumed with an `Exit`, which hands the loop's frame its value at once. A
 * wake-up thus costs two run-loop ops (that `Exit` and the next wait) and an effectful request one more, its own:
 * no continuation of ours is pushed per request. A failure of a service's Effect unwinds to the handler around the
 * loop, which answers it and enters the loop anew.
 */
import type * as Cause from "effect/Cause"
import { Suspend } from "@warren/process"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type { PbServiceError, ProcessResult } from "../PbService.js"
import type { Connection } from "./connection.js"
import { afterProcess, handleFailure, handleFrame } from "./dispatch.js"
import { Texts } from "./errors.js"
import type { FrameProblem } from "./frame.js"
import type { ServiceInstance } from "./instance.js"
import type { LoopStep, Next, Step } from "./state.js"
import { streamStep } from "./streaming.js"

/** What a wait resumes with: an `Exit`, so no step runs before the loop's next `body`. */
export const WOKEN: Effect.Effect<unknown, PbServiceError> = Exit.void

/** What the Effect that `body` returned is (how `afterBody` reads its value). */
const Run = { Other: 0, Step: 1, Request: 2, Drain: 3 } as const
type Run = typeof Run[keyof typeof Run]

/** A connection's serving loop (one per connection, built with it; its fiber runs `effect`). */
export class ServingLoop {
  /** The loop, built once per connection. */
  readonly effect: Effect.Effect<void, PbServiceError> = Effect.catchAllCause(
    Effect.whileLoop({
      while: () => !this.over,
      body: () => this.body(),
      step: (value: unknown) => this.afterBody(value)
    }),
    (cause) => this.onFailure(cause)
  )
  /**
   * Suspends until there is something to do (connection.ts `awaitWork`). Resumed with `WOKEN`: the loop's frame,
   * still on the stack, takes it as the wait's value and runs the next `body`.
   */
  private readonly wait: Effect.Effect<unknown, PbServiceError> = Suspend.make<unknown, PbServiceError>((resume) =>
    this.conn.awaitWork(resume)
  )
  private running: Run = Run.Other
  /** The loop's end: set with the last Effect it runs. */
  private over = false
  /** What a step left to do before serving on: an Effect that gives its `Next`, or a "Close" to honour. */
  private upcoming: Effect.Effect<Next> | undefined = undefined
  private closing = false
  /** The service's Effect joined to the loop, and for whom it runs. */
  private joined: Effect.Effect<unknown, PbServiceError> | undefined = undefined
  private joinedInstance: ServiceInstance | undefined = undefined
  private joinedCode = 0

  constructor(private readonly conn: Connection) {}

  /** Makes a service's Effect the loop's next body (see `Connection.join`). */
  join(effect: Effect.Effect<unknown, PbServiceError>, instance: ServiceInstance, code: number): "Joined" {
    this.joined = effect
    this.joinedInstance = instance
    this.joinedCode = code
    return "Joined"
  }

  private body(): Effect.Effect<unknown, PbServiceError> {
    if (this.closing) return this.end(this.conn.flush())
    const upcoming = this.upcoming
    if (upcoming !== undefined) {
      this.upcoming = undefined
      this.running = Run.Step
      return upcoming
    }
    return this.next()
  }

  // The casts restore what `running` says the value is.
  private afterBody(value: unknown): void {
    switch (this.running) {
      case Run.Request: {
        const instance = this.joinedInstance!
        this.joinedInstance = undefined
        const result = value as ProcessResult<unknown, unknown, unknown>
        instance.keepState(result)
        return this.afterStep(afterProcess(this.conn, result, instance, this.joinedCode))
      }
      case Run.Step:
        return this.afterStep(value as Next)
      case Run.Drain:
        if (this.conn.idleExpired) this.over = true
    }
  }

  private afterStep(step: Step): void {
    if (typeof step !== "string") this.upcoming = step
    else if (step === "Close") this.closing = true
  }

  /** A service's Effect failed: answered as `process` failures are, then the loop goes on. Anything else ends it. */
  private onFailure(cause: Cause.Cause<PbServiceError>): Effect.Effect<void, PbServiceError> {
    const instance = this.joinedInstance
    if (this.running !== Run.Request || instance === undefined) return Effect.failCause(cause)
    this.joinedInstance = undefined
    this.afterStep(handleFailure(this.conn, cause, instance, this.joinedCode, false))
    return this.effect
  }

  private end(last: Effect.Effect<void>): Effect.Effect<void> {
    this.over = true
    this.running = Run.Other
    return last
  }

  private next(): Effect.Effect<unknown, PbServiceError> {
    const conn = this.conn
    const config = conn.server.config
    while (!conn.closed) {
      // The same rule after every step, synchronous or not: write once `flushBytes` are ready, and serve nothing
      // more until the socket has drained what was written.
      if (conn.out.size >= config.flushBytes) conn.writeOut()
      if (conn.writeBlocked) {
        this.running = Run.Drain
        return conn.awaitDrain
      }
      if (conn.state.streaming !== undefined) {
        this.running = Run.Step
        return streamStep(conn)
      }
      // Messages for a stream that is over (or that never started): dropped, as riak drops them.
      if (conn.inbox !== undefined && conn.inbox.size > 0) conn.inbox.takeAll()
      if (conn.hasFrames()) {
        const step = this.serveFrames()
        if (step === "Joined") {
          const effect = this.joined!
          this.joined = undefined
          this.running = Run.Request
          return effect
        }
        if (typeof step !== "string") {
          this.running = Run.Step
          return step
        }
        if (step === "Close") return this.end(conn.flush())
        continue
      }
      // Replies first (the client is waiting for them), then the batch's metrics.
      conn.writeOut()
      conn.recordCounts()
      conn.updateReading()
      if (conn.writeBlocked) continue
      if (conn.problem !== undefined) return this.end(this.handleProblem(conn.problem))
      if (conn.eof || conn.idleExpired) return this.end(Effect.void)
      this.running = Run.Other
      return this.wait
    }
    return this.end(Effect.void)
  }

  /** Serves pending frames while their results are known synchronously (one batch). */
  private serveFrames(): LoopStep {
    const conn = this.conn
    conn.busy()
    const flushBytes = conn.server.config.flushBytes
    while (conn.hasFrames() && conn.state.streaming === undefined && !conn.closed) {
      const step = handleFrame(conn, conn.takeFrame())
      if (step !== "Continue") return step
      if (conn.out.size >= flushBytes) return "Continue"
    }
    return "Continue"
  }

  private handleProblem(problem: FrameProblem): Effect.Effect<void> {
    if (problem._tag === "Empty") return Effect.void
    this.conn.sendError(Texts.frameTooLarge(problem.length, this.conn.server.config.maxFrameSize), "oversized_frame")
    this.conn.recordCounts()
    return this.conn.flush()
  }
}
