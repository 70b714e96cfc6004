/**
 * Riak PB framing: a 4-byte big-endian length (code byte + body), the code byte, the body.
 */

/** One complete frame. `body` may be a view into a received chunk (chunks are never reused by Node). */
export interface Frame {
  readonly code: number
  readonly body: Uint8Array
}

const EMPTY = new Uint8Array(0)

/** What a chunk of bytes gave besides frames: a frame too large, or a zero-length frame. */
export type FrameProblem =
  | { readonly _tag: "Oversized"; readonly length: number }
  | { readonly _tag: "Empty" }

/**
 * Reassembles frames from chunks. A length above `maxFrameSize` is reported from the header alone, before any of
 * the body is buffered; after a problem the decoder stops (the connection is closing).
 *
 * A partial frame holds only the bytes received so far (never a buffer sized from its length header, which would
 * let a client pin `maxFrameSize` bytes per connection with four bytes): large pieces are kept as the chunks they
 * arrived in, small ones are copied into a tail of at most `TAIL` bytes, and the frame is assembled once complete.
 */
export class FrameDecoder {
  // Allocated only when a length header is split across chunks.
  private header: Uint8Array | undefined = undefined
  private headerFill = 0
  /** The length (code + body) of the frame being reassembled; 0 when none. */
  private length = 0
  private parts: Array<Uint8Array> = []
  private tail: Uint8Array | undefined = undefined
  private tailFill = 0
  private bodyFill = 0
  private stopped = false

  constructor(private readonly maxFrameSize: number) {}

  /** Bytes of the frame being reassembled (header and body so far). */
  get partialBytes(): number {
    return this.headerFill + this.bodyFill
  }

  /** Appends the frames found in `chunk` to `out`; returns a problem if one stops the stream. */
  push(chunk: Uint8Array, out: Array<Frame>): FrameProblem | undefined {
    if (this.stopped) return undefined
    let offset = 0
    const end = chunk.length
    while (offset < end) {
      if (this.length > 0) {
        const n = Math.min(this.length - this.bodyFill, end - offset)
        this.append(chunk.subarray(offset, offset + n))
        offset += n
        if (this.bodyFill === this.length) out.push(this.assemble())
        continue
      }
      let length: number
      if (this.headerFill === 0 && end - offset >= 4) {
        length = readLength(chunk, offset)
        offset += 4
      } else {
        const header = this.header ??= new Uint8Array(4)
        const n = Math.min(4 - this.headerFill, end - offset)
        header.set(chunk.subarray(offset, offset + n), this.headerFill)
        this.headerFill += n
        offset += n
        if (this.headerFill < 4) continue
        this.headerFill = 0
        length = readLength(header, 0)
      }
      if (length === 0) {
        this.stopped = true
        return { _tag: "Empty" }
      }
      if (length > this.maxFrameSize) {
        this.stopped = true
        return { _tag: "Oversized", length }
      }
      if (end - offset >= length) {
        out.push({ code: chunk[offset]!, body: length === 1 ? EMPTY : chunk.subarray(offset + 1, offset + length) })
        offset += length
      } else {
        this.length = length
        this.bodyFill = 0
      }
    }
    return undefined
  }

  private append(bytes: Uint8Array): void {
    const remaining = this.length - this.bodyFill
    this.bodyFill += bytes.length
    if (bytes.length >= PIECE) {
      this.flushTail()
      this.parts.push(bytes) // a view: Node's read chunks are sized to what was read
      return
    }
    if (this.tail === undefined || this.tailFill + bytes.length > this.tail.length) {
      this.flushTail()
      this.tail = new Uint8Array(Math.min(remaining, TAIL))
    }
    this.tail.set(bytes, this.tailFill)
    this.tailFill += bytes.length
  }

  private flushTail(): void {
    if (this.tail !== undefined && this.tailFill > 0) this.parts.push(this.tail.subarray(0, this.tailFill))
    this.tail = undefined
    this.tailFill = 0
  }

  private assemble(): Frame {
    this.flushTail()
    const parts = this.parts
    let bytes: Uint8Array
    if (parts.length === 1) {
      bytes = parts[0]!
    } else {
      bytes = new Uint8Array(this.length)
      let at = 0
      for (const part of parts) {
        bytes.set(part, at)
        at += part.length
      }
    }
    this.parts = []
    this.length = 0
    this.bodyFill = 0
    return { code: bytes[0]!, body: bytes.length === 1 ? EMPTY : bytes.subarray(1) }
  }
}

/** Pieces of a partial frame at least this large are kept as received; smaller ones are copied into a tail. */
const PIECE = 4096
const TAIL = 64 * 1024

const readLength = (bytes: Uint8Array, at: number): number =>
  ((bytes[at]! << 24) >>> 0) + (bytes[at + 1]! << 16) + (bytes[at + 2]! << 8) + bytes[at + 3]!

/** Frames `payload` (code byte + body) into a new buffer. */
export const frame = (payload: Uint8Array): Uint8Array => {
  const out = new Uint8Array(payload.length + 4)
  writeLength(out, 0, payload.length)
  out.set(payload, 4)
  return out
}

const writeLength = (out: Uint8Array, at: number, length: number): void => {
  out[at] = (length >>> 24) & 0xff
  out[at + 1] = (length >>> 16) & 0xff
  out[at + 2] = (length >>> 8) & 0xff
  out[at + 3] = length & 0xff
}

const LARGE = 16 * 1024

// Output buffers are carved from a shared slab (like Node's own 8 KiB pool, larger): a batch of 1 KiB replies would
// otherwise need a fresh `allocUnsafe` (a new ArrayBuffer) on every flush. The slab is only ever filled forward, so a
// slice handed to `socket.write` is never overwritten; a slab lives while any of its slices is still queued.
const SLAB_SIZE = 256 * 1024
const SLAB_MAX = 32 * 1024
let slab: Buffer = Buffer.allocUnsafeSlow(SLAB_SIZE)
let slabAt = 0

const allocOut = (size: number): Buffer => {
  if (size > SLAB_MAX) return Buffer.allocUnsafe(size)
  if (slabAt + size > SLAB_SIZE) {
    slab = Buffer.allocUnsafeSlow(SLAB_SIZE)
    slabAt = 0
  }
  const out = slab.subarray(slabAt, slabAt + size)
  slabAt = (slabAt + size + 7) & ~7
  return out
}

/** Copies `bytes` into `out` at `at`: a loop for a few bytes (`TypedArray.set` has a fixed cost larger than that). */
const copyInto = (out: Uint8Array, at: number, bytes: Uint8Array): void => {
  const n = bytes.length
  if (n <= 16) {
    for (let i = 0; i < n; i++) out[at + i] = bytes[i]!
  } else {
    out.set(bytes, at)
  }
}

/**
 * Replies waiting to be written, coalesced into as few writes as possible: small frames are copied into one
 * buffer (carved from a shared slab), large pieces are written as they are (no copy). Nothing is kept once taken
 * (fresh empty lists, not cleared ones: an idle connection then holds no list storage), so no reply outlives its
 * write.
 */
export class OutBuffer {
  // Per reply: its length, then its pieces.
  private lengths: Array<number> = []
  private pieces: Array<Uint8Array | ReadonlyArray<Uint8Array>> = []
  private total = 0
  private hasLarge = false

  /** Bytes waiting (frames included). */
  get size(): number {
    return this.total
  }

  /**
   * Appends one reply (code byte + body, whole or in pieces). `false` (and nothing appended) when it is not a
   * non-empty byte sequence.
   */
  push(payload: Uint8Array | ReadonlyArray<Uint8Array>): boolean {
    let length: number
    if (payload instanceof Uint8Array) {
      length = payload.length
      if (length > LARGE) this.hasLarge = true
    } else {
      if (!Array.isArray(payload)) return false
      length = 0
      for (const piece of payload) {
        if (!(piece instanceof Uint8Array)) return false
        if (piece.length > LARGE) this.hasLarge = true
        length += piece.length
      }
    }
    if (length === 0) return false
    this.lengths.push(length)
    this.pieces.push(payload)
    this.total += length + 4
    return true
  }

  /**
   * Takes everything waiting as one framed buffer, when nothing large is waiting (the usual case: one pass, one
   * buffer); `undefined` when something is (then `take`).
   */
  takeSmall(): Uint8Array | undefined {
    if (this.hasLarge) return undefined
    const lengths = this.lengths
    const payloads = this.pieces
    const buffer = allocOut(this.total)
    this.lengths = []
    this.pieces = []
    this.total = 0
    let at = 0
    for (let i = 0; i < payloads.length; i++) {
      writeLength(buffer, at, lengths[i]!)
      at += 4
      const payload = payloads[i]!
      if (payload instanceof Uint8Array) {
        copyInto(buffer, at, payload)
        at += payload.length
      } else {
        for (const piece of payload) {
          copyInto(buffer, at, piece)
          at += piece.length
        }
      }
    }
    return buffer
  }

  /** Takes everything waiting as framed chunks to write, in order. */
  take(): Array<Uint8Array> {
    const small = this.takeSmall()
    if (small !== undefined) return [small]
    const lengths = this.lengths
    const payloads = this.pieces
    this.lengths = []
    this.pieces = []
    this.total = 0
    this.hasLarge = false
    // Pass 1: the sizes of the runs of bytes to copy (headers and small pieces), split by the large pieces.
    const runSizes: Array<number> = []
    let runSize = 0
    for (let i = 0; i < payloads.length; i++) {
      runSize += 4
      const payload = payloads[i]!
      if (payload instanceof Uint8Array) {
        if (payload.length > LARGE) {
          runSizes.push(runSize)
          runSize = 0
        } else {
          runSize += payload.length
        }
      } else {
        for (const piece of payload) {
          if (piece.length > LARGE) {
            runSizes.push(runSize)
            runSize = 0
          } else {
            runSize += piece.length
          }
        }
      }
    }
    runSizes.push(runSize)
    // Pass 2: fill the runs, in order with the large pieces.
    const out: Array<Uint8Array> = []
    let run = 0
    let buffer = Buffer.allocUnsafe(runSizes[0]!)
    let at = 0
    const put = (piece: Uint8Array) => {
      if (piece.length > LARGE) {
        if (at > 0) out.push(buffer)
        out.push(piece)
        buffer = Buffer.allocUnsafe(runSizes[++run]!)
        at = 0
      } else {
        buffer.set(piece, at)
        at += piece.length
      }
    }
    for (let i = 0; i < payloads.length; i++) {
      writeLength(buffer, at, lengths[i]!)
      at += 4
      const payload = payloads[i]!
      if (payload instanceof Uint8Array) put(payload)
      else for (const piece of payload) put(piece)
    }
    if (at > 0) out.push(buffer)
    return out
  }
}
