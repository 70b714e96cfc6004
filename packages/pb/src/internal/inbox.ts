/**
 * The connection's mailbox for messages sent by other fibers (`ctx.send`): bounded, senders suspend while it is
 * full, the connection fiber drains it synchronously. Allocated only when a service first sends something, so an
 * idle connection costs nothing for it.
 */
import * as Effect from "effect/Effect"

export class Inbox<A> {
  private items: Array<A> = []
  private waiting: Array<(effect: Effect.Effect<void>) => void> = []
  private closed = false

  constructor(private readonly capacity: number, private readonly onMessage: () => void) {}

  get size(): number {
    return this.items.length
  }

  /** Adds `item` unless the inbox is full or closed. */
  unsafeOffer(item: A): boolean {
    if (this.closed || this.items.length >= this.capacity) return false
    this.items.push(item)
    this.onMessage()
    return true
  }

  /** Adds `item`, waiting while the inbox is full; `false` once it is closed. */
  offer(item: A): Effect.Effect<boolean> {
    return Effect.suspend(() => {
      if (this.closed) return Effect.succeed(false)
      if (this.items.length < this.capacity) {
        this.items.push(item)
        this.onMessage()
        return Effect.succeed(true)
      }
      return Effect.zipRight(this.awaitRoom, this.offer(item))
    })
  }

  private readonly awaitRoom: Effect.Effect<void> = Effect.async<void>((resume) => {
    this.waiting.push(resume)
    return Effect.sync(() => {
      const at = this.waiting.indexOf(resume)
      if (at >= 0) this.waiting.splice(at, 1)
    })
  })

  /** Takes everything, waking the senders waiting for room. */
  takeAll(): Array<A> {
    const items = this.items
    if (items.length === 0) return items
    this.items = []
    this.wakeSenders()
    return items
  }

  /** Drops everything; later offers get `false`. */
  close(): void {
    this.closed = true
    this.items = []
    this.wakeSenders()
  }

  private wakeSenders(): void {
    const waiting = this.waiting
    this.waiting = []
    for (const resume of waiting) resume(Effect.void)
  }
}
