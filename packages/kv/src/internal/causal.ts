/**
 * Causal clocks of stored objects: dotted version vectors. Every write is one event, a dot `(actor,
 * counter)`, where the actor is the writing store instance (a random 8-byte id per `KvStore.fromBackend`,
 * so per server process) and the counter is that instance's write counter. An object keeps:
 *
 * - one dot per sibling (the write that made that value);
 * - its clock: actor -> the highest counter among those dots (and the write's own event).
 *
 * A client's context (the vclock it fetched) covers a sibling when its clock has the sibling's actor at
 * the sibling's counter or later: the client saw that value. Counters of one actor only grow over time,
 * an actor is never reused, and every write is a compare-and-set against the state it read, so a dot
 * created after the client's read is never covered: concurrent writes become siblings, and no write is
 * lost. For the same reason the clock needs no history beyond the current siblings' dots (any older dot
 * of an actor is either still a sibling, and was seen with the newer one, or gone for good), so a clock
 * has at most one entry per sibling and never needs pruning.
 *
 * Wire format of the vclock bytes (opaque to clients; big-endian):
 *
 *   0x77 0x02 | u16 n | n x (actor 8 bytes, u64 counter) | u16 m | m x (u16 actor index, u64 counter)
 *
 * The clock always holds the newest write's own event at its maximum, so the bytes differ for every write.
 * The format written before siblings (`0x77 0x01 | actor 8 bytes | u64 counter`) is exactly one dot and
 * reads as such; bytes in neither format read as one opaque dot named by a hash of the bytes.
 */
import { createHash } from "node:crypto"

/** Actor ids as Map keys: 8 bytes as latin1 text (one char per byte). */
export type Actor = string

/** One write event. */
export interface Dot {
  readonly actor: Actor
  readonly counter: number
}

/** An object's causal state: its clock and one dot per sibling (in the order of the contents). */
export interface Causal {
  readonly clock: ReadonlyMap<Actor, number>
  readonly dots: ReadonlyArray<Dot>
}

const magic = 0x77
const actorBytes = 8
const two32 = 2 ** 32

/** A u64 counter (below 2^53) as two u32 halves: bigint conversions are slow on this path. */
const readCounter = (buf: Buffer, offset: number): number =>
  buf.readUInt32BE(offset) * two32 + buf.readUInt32BE(offset + 4)

const writeCounter = (buf: Buffer, n: number, offset: number): number => {
  buf.writeUInt32BE(Math.floor(n / two32), offset)
  return buf.writeUInt32BE(n % two32, offset + 4)
}

/** A fresh actor id (from 8 random bytes). */
export const actorOf = (bytes: Uint8Array): Actor =>
  Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("latin1")

/** Whether `clock` has seen `dot`. */
export const covers = (clock: ReadonlyMap<Actor, number>, dot: Dot): boolean =>
  (clock.get(dot.actor) ?? 0) >= dot.counter

/** The empty clock (no context). */
export const empty: ReadonlyMap<Actor, number> = new Map()

/** The smallest clock covering `dots`: each actor's highest counter. */
export const clockOf = (dots: ReadonlyArray<Dot>): Map<Actor, number> => {
  const out = new Map<Actor, number>()
  for (const dot of dots) if ((out.get(dot.actor) ?? 0) < dot.counter) out.set(dot.actor, dot.counter)
  return out
}

/** Bytes in no known format: one dot of an actor named by their hash, so equal bytes read equally. */
const opaque = (bytes: Uint8Array, siblings: number): Causal => {
  const actor = createHash("sha256").update(bytes).digest().subarray(0, actorBytes).toString("latin1")
  const dot = { actor, counter: 1 }
  return { clock: new Map([[actor, 1]]), dots: Array.from({ length: siblings }, () => dot) }
}

const parse = (bytes: Uint8Array): Causal | undefined => {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  if (buf.length < 2 || buf[0] !== magic) return undefined
  if (buf[1] === 1) {
    if (buf.length !== 2 + actorBytes + 8) return undefined
    const actor = buf.subarray(2, 2 + actorBytes).toString("latin1")
    const counter = readCounter(buf, 2 + actorBytes)
    return { clock: new Map([[actor, counter]]), dots: [{ actor, counter }] }
  }
  if (buf[1] !== 2) return undefined
  let offset = 2
  const need = (n: number) => offset + n <= buf.length
  if (!need(2)) return undefined
  const entries = buf.readUInt16BE(offset)
  offset += 2
  const actors: Array<Actor> = []
  const clock = new Map<Actor, number>()
  for (let i = 0; i < entries; i++) {
    if (!need(actorBytes + 8)) return undefined
    const actor = buf.subarray(offset, offset + actorBytes).toString("latin1")
    const counter = readCounter(buf, offset + actorBytes)
    offset += actorBytes + 8
    actors.push(actor)
    clock.set(actor, counter)
  }
  if (!need(2)) return undefined
  const count = buf.readUInt16BE(offset)
  offset += 2
  const dots: Array<Dot> = []
  for (let i = 0; i < count; i++) {
    if (!need(10)) return undefined
    const actor = actors[buf.readUInt16BE(offset)]
    if (actor === undefined) return undefined
    dots.push({ actor, counter: readCounter(buf, offset + 2) })
    offset += 10
  }
  return offset === buf.length ? { clock, dots } : undefined
}

/**
 * The causal state stored with an object of `siblings` contents. A stored vclock whose dots do not match
 * its contents (not written by this code) reads as one opaque dot shared by all of them.
 */
export const decodeStored = (vclock: Uint8Array, siblings: number): Causal => {
  const parsed = parse(vclock)
  return parsed !== undefined && parsed.dots.length === siblings ? parsed : opaque(vclock, siblings)
}

/**
 * The clock of a client's context (the vclock bytes it fetched); foreign bytes read as one opaque dot,
 * empty bytes as no context.
 */
export const decodeContext = (vclock: Uint8Array): ReadonlyMap<Actor, number> =>
  vclock.length === 0 ? empty : (parse(vclock) ?? opaque(vclock, 1)).clock

/** The vclock bytes of one value made by `dot` (the common case: `encode` of that state, without maps). */
export const encodeSingle = (dot: Dot): Uint8Array => {
  const out = Buffer.allocUnsafe(2 + 2 + actorBytes + 8 + 2 + 10)
  out[0] = magic
  out[1] = 2
  out.writeUInt16BE(1, 2)
  out.write(dot.actor, 4, actorBytes, "latin1")
  writeCounter(out, dot.counter, 4 + actorBytes)
  out.writeUInt16BE(1, 4 + actorBytes + 8)
  out.writeUInt16BE(0, 4 + actorBytes + 10)
  writeCounter(out, dot.counter, 4 + actorBytes + 12)
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength)
}

/** The vclock bytes of a causal state. */
export const encode = (causal: Causal): Uint8Array => {
  const actors = causal.clock.size === 1 ? [...causal.clock.keys()] : [...causal.clock.keys()].sort()
  const index = new Map(actors.map((a, i) => [a, i]))
  const out = Buffer.alloc(2 + 2 + actors.length * (actorBytes + 8) + 2 + causal.dots.length * 10)
  out[0] = magic
  out[1] = 2
  let offset = out.writeUInt16BE(actors.length, 2)
  for (const actor of actors) {
    offset += out.write(actor, offset, actorBytes, "latin1")
    offset = writeCounter(out, causal.clock.get(actor)!, offset)
  }
  offset = out.writeUInt16BE(causal.dots.length, offset)
  for (const dot of causal.dots) {
    offset = out.writeUInt16BE(index.get(dot.actor)!, offset)
    offset = writeCounter(out, dot.counter, offset)
  }
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength)
}
