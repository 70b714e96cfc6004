/**
 * Deadline lists: entries waiting with the same timeout form a FIFO (their deadlines arrive in the order they
 * were armed), so one timer fiber per distinct timeout sleeps until the head's deadline. Entries are intrusive
 * list nodes: arming and cancelling allocate nothing.
 */
import type * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Runtime from "effect/Runtime"

/** A list node: anything with a deadline and an `expire` callback. */
export interface Entry {
  /** Clock millis at which `expire` runs. */
  deadline: number
  list: DeadlineList | undefined
  prev: Entry | undefined
  next: Entry | undefined
  /** Called once by the timer fiber when the deadline has passed (the entry is already unlinked). */
  expire(): void
}

/** Entries armed with the same timeout, oldest first; one fiber sleeps until the head's deadline. */
export class DeadlineList {
  head: Entry | undefined = undefined
  tail: Entry | undefined = undefined
  wake: (() => void) | undefined = undefined
  fiber: Fiber.RuntimeFiber<void> | undefined = undefined
  constructor(readonly millis: number) {}

  append(entry: Entry): void {
    entry.list = this
    entry.prev = this.tail
    entry.next = undefined
    if (this.tail === undefined) this.head = entry
    else this.tail.next = entry
    this.tail = entry
    if (this.wake !== undefined) {
      const wake = this.wake
      this.wake = undefined
      wake()
    }
  }

  unlink(entry: Entry): void {
    if (entry.prev === undefined) this.head = entry.next
    else entry.prev.next = entry.next
    if (entry.next === undefined) this.tail = entry.prev
    else entry.next.prev = entry.prev
    entry.prev = undefined
    entry.next = undefined
    entry.list = undefined
  }
}

/** Idle timer fibers kept per owner (one per distinct timeout in use). */
const MAX_IDLE_LISTS = 8

/** The deadline lists of one owner (a process, a client), keyed by timeout in millis. */
export class DeadlinesImpl {
  readonly lists = new Map<number, DeadlineList>()
  closed = false
  constructor(readonly clock: Clock.Clock, readonly runtime: Runtime.Runtime<never>) {}

  /** Arm `entry` to expire `millis` from now (finite, >= 0). */
  arm(entry: Entry, millis: number): void {
    entry.deadline = this.clock.unsafeCurrentTimeMillis() + millis
    const list = this.lists.get(millis)
    if (list !== undefined) return list.append(entry)
    // A new list gets its entry before its fiber starts (the fiber may run at once and sees it non-empty).
    const created = new DeadlineList(millis)
    this.lists.set(millis, created)
    created.append(entry)
    // Detached on purpose: supervised by this object; `shutdown` interrupts it (a process at its exit, a
    // `Deadlines.make` Scope at its close), and it ends by itself when idle and too many lists exist.
    if (!this.closed) created.fiber = Runtime.runFork(this.runtime)(Effect.interruptible(timerLoop(this, created)))
  }

  /** Disarm `entry` if it is armed; true if it was. */
  cancel(entry: Entry): boolean {
    if (entry.list === undefined) return false
    entry.list.unlink(entry)
    return true
  }

  /** Stop every timer fiber; entries still armed never expire. */
  shutdown(): Effect.Effect<void> {
    return Effect.suspend(() => {
      this.closed = true
      const fibers: Array<Fiber.RuntimeFiber<void>> = []
      for (const list of this.lists.values()) if (list.fiber !== undefined) fibers.push(list.fiber)
      this.lists.clear()
      return fibers.length === 0 ? Effect.void : Fiber.interruptAll(fibers)
    })
  }
}

const timerLoop = (owner: DeadlinesImpl, list: DeadlineList): Effect.Effect<void> =>
  Effect.gen(function*() {
    for (;;) {
      const head = list.head
      if (head === undefined) {
        if (owner.lists.size > MAX_IDLE_LISTS) {
          // Many distinct timeouts in use: do not keep an idle fiber for each.
          owner.lists.delete(list.millis)
          return
        }
        yield* Effect.async<void>((resume) => {
          list.wake = () => resume(Effect.void)
        })
        continue
      }
      const now = owner.clock.unsafeCurrentTimeMillis()
      if (head.deadline <= now) {
        list.unlink(head)
        head.expire()
        continue
      }
      yield* owner.clock.sleep(Duration.millis(head.deadline - now))
    }
  })

/** A stand-alone entry that runs a callback (the public module's timers). */
export class Timer implements Entry {
  deadline = 0
  list: DeadlineList | undefined = undefined
  prev: Entry | undefined = undefined
  next: Entry | undefined = undefined
  constructor(readonly onExpire: () => void) {}
  expire(): void {
    this.onExpire()
  }
}
