/**
 * The server-wide byte budget: what all connections hold in buffered input (unprocessed frames, partial frames)
 * and output (replies not yet taken by the kernel). Past the limit, connections stop reading until some is
 * released; nothing is dropped.
 */
export class ByteBudget {
  private used = 0
  private waiting = new Set<() => void>()

  constructor(readonly limit: number) {}

  get bytes(): number {
    return this.used
  }

  get exhausted(): boolean {
    return this.used >= this.limit
  }

  /** Adds (or, negative, releases) bytes; a release that brings use under the limit wakes the waiting readers. */
  add(delta: number): void {
    this.used += delta
    if (delta < 0 && this.used < this.limit && this.waiting.size > 0) {
      const waiting = this.waiting
      this.waiting = new Set()
      for (const wake of waiting) wake()
    }
  }

  /** Calls `wake` once use falls under the limit. */
  onRoom(wake: () => void): void {
    this.waiting.add(wake)
  }

  cancel(wake: () => void): void {
    this.waiting.delete(wake)
  }
}
