/**
 * A process's mailbox: envelopes in arrival order, taken a batch at a time by the process fiber, plus the
 * envelopes put aside while the process is suspended (only system messages are handled then).
 */
import * as Effect from "effect/Effect"
import * as Suspend from "../Suspend.js"
import type { FromImpl } from "./callers.js"
import type * as M from "./model.js"

export const CALL = 0
export const CAST = 1
export const INFO = 2
export const STOP = 3
export const ABANDONED_NOTICE = 4
export const SYSTEM = 5

/** A cast or a plain message. */
export interface Message {
  readonly kind: typeof CAST | typeof INFO
  readonly message: unknown
}

/** An ordered stop (`Process.exit`). */
export interface StopRequest {
  readonly kind: typeof STOP
  readonly reason: M.ExitReason<unknown>
}

/** A caller kept by the behaviour gave up: run `handleAbandoned`. */
export interface AbandonedNotice {
  readonly kind: typeof ABANDONED_NOTICE
  readonly from: FromImpl
}

/** What a mailbox holds: calls and system requests are their caller objects (kind CALL or SYSTEM). */
export type Envelope = FromImpl | Message | StopRequest | AbandonedNotice

/** System messages are handled even by a suspended process. */
export const isSystem = (envelope: Envelope): boolean => envelope.kind === SYSTEM || envelope.kind === STOP

const EMPTY: Array<Envelope> = []

export class Mailbox {
  queue: Array<Envelope> = []
  /** An empty array to swap in as the queue when a batch is taken (the previous batch, once handled). */
  spare: Array<Envelope> = []
  /** Envelopes a suspended process put aside, oldest first; they come back first on resume. */
  held: Array<Envelope> = EMPTY
  /** The batch in hand and the index of the envelope being handled. */
  batch: Array<Envelope> = EMPTY
  cursor = 0
  waiter: ((_: Effect.Effect<void>) => void) | undefined = undefined
  /** Suspends the process fiber until `wakeUp` (one shared Effect, no allocation per wait). */
  readonly awaitMessages: Effect.Effect<void> = Suspend.make<void>((resume) => {
    this.waiter = resume
  })

  push(envelope: Envelope): void {
    this.queue.push(envelope)
    this.wakeUp()
  }

  wakeUp(): void {
    if (this.waiter !== undefined) {
      const waiter = this.waiter
      this.waiter = undefined
      waiter(Effect.void)
    }
  }

  /** Take everything queued as the batch in hand. */
  take(): Array<Envelope> {
    const batch = this.queue
    this.queue = this.spare === EMPTY ? [] : this.spare
    this.spare = EMPTY
    this.batch = batch
    this.cursor = 0
    return batch
  }

  /** Put back the batch from index `from` on, ahead of anything that arrived since; the batch is done. */
  requeue(from: number): void {
    const batch = this.batch
    this.batch = EMPTY
    if (from >= batch.length) {
      // All handled: the batch array becomes the next spare queue.
      if (batch !== EMPTY && this.spare === EMPTY) {
        batch.length = 0
        this.spare = batch
      }
      return
    }
    const rest = from === 0 ? batch : batch.slice(from)
    this.queue = this.queue.length === 0 ? rest : rest.concat(this.queue)
  }

  /** Put an envelope aside while suspended. */
  hold(envelope: Envelope): void {
    if (this.held === EMPTY) this.held = []
    this.held.push(envelope)
  }

  /** Resumed: the held envelopes go back first, then the rest of the batch (from `from`), then the queue. */
  release(from: number): void {
    this.requeue(from)
    if (this.held.length === 0) return
    this.queue = this.queue.length === 0 ? this.held : this.held.concat(this.queue)
    this.held = EMPTY
  }

  /** Envelopes waiting: queued, held, and the unhandled rest of the batch in hand. */
  size(): number {
    return this.queue.length + this.held.length + Math.max(0, this.batch.length - this.cursor - 1)
  }

  /** Empty the mailbox (at exit): everything not handled yet, held ones first. */
  drain(): Array<Envelope> {
    const rest = this.batch.length > this.cursor + 1 ? this.batch.slice(this.cursor + 1) : EMPTY
    const all = this.held.concat(rest, this.queue)
    this.held = EMPTY
    this.batch = EMPTY
    this.queue = []
    return all
  }
}
