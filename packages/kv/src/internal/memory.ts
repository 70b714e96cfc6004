/**
 * The in-memory table of the embedded backend: type → bucket → key → record, with size accounting and
 * bounded listing batches. Synchronous, so a read-check-write on it is atomic within one fiber step.
 */
import type * as KvBackend from "../KvBackend.js"
import type * as KvStore from "../KvStore.js"

/** Bytes charged per object on top of its payload (map entries, record, arrays). */
export const objectOverhead = 128
const pairOverhead = 16

/** A stored record with its address and its charged size. */
export interface Row extends KvBackend.Address, KvBackend.StoredObject {
  readonly size: number
}

interface BucketState {
  readonly name: Uint8Array
  readonly keys: Map<string, Row>
}

interface TypeState {
  readonly name: Uint8Array
  readonly buckets: Map<string, BucketState>
}

/** A byte string as a Map key: latin1 maps every byte to one char, so the mapping is one to one. */
export const id = (bytes: Uint8Array): string =>
  Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("latin1")

export const equalBytes = (a: Uint8Array, b: Uint8Array): boolean =>
  a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b)

const length = (bytes: Uint8Array | undefined): number => (bytes === undefined ? 0 : bytes.length)

const pairsSize = (pairs: ReadonlyArray<KvStore.Pair> | undefined): number =>
  pairs === undefined ? 0 : pairs.reduce((n, p) => n + pairOverhead + p.key.length + length(p.value), 0)

type SizedContent = KvStore.ContentInput & { readonly vtag?: Uint8Array | undefined }

const contentSize = (content: SizedContent): number =>
  content.value.length + length(content.contentType) + length(content.charset) + length(content.contentEncoding) +
  length(content.vtag) + pairsSize(content.usermeta) + pairsSize(content.indexes) +
  (content.links === undefined
    ? 0
    : content.links.reduce((n, l) => n + pairOverhead + length(l.bucket) + length(l.key) + length(l.tag), 0))

/** Approximate memory held by one object (with its siblings, each charged like a value). */
export const recordSize = (
  address: KvBackend.Address,
  vclock: Uint8Array,
  content: SizedContent,
  siblings?: ReadonlyArray<SizedContent> | undefined
): number =>
  objectOverhead + address.type.length + address.bucket.length + address.key.length + vclock.length +
  contentSize(content) +
  (siblings === undefined ? 0 : siblings.reduce((n, c) => n + pairOverhead + contentSize(c), 0))

/** Splits names into batches of at most `maxCount` names and (unless one name is longer) `maxBytes` bytes. */
export function* batches(
  names: Iterator<Uint8Array>,
  maxCount: number,
  maxBytes: number
): IterableIterator<ReadonlyArray<Uint8Array>> {
  let batch: Array<Uint8Array> = []
  let bytes = 0
  for (let next = names.next(); !next.done; next = names.next()) {
    const name = next.value
    if (batch.length > 0 && (batch.length >= maxCount || bytes + name.length > maxBytes)) {
      yield batch
      batch = []
      bytes = 0
    }
    batch.push(name)
    bytes += name.length
  }
  if (batch.length > 0) yield batch
}

function* mapIterator<A, B>(it: Iterator<A>, f: (a: A) => B): Iterator<B> {
  for (let next = it.next(); !next.done; next = it.next()) yield f(next.value)
}

/** The table. Every mutation bumps `version`, so a snapshot can tell whether anything changed. */
export class Table {
  private readonly types = new Map<string, TypeState>()
  objects = 0
  bytes = 0
  version = 0

  get(address: KvBackend.Address): Row | undefined {
    return this.types.get(id(address.type))?.buckets.get(id(address.bucket))?.keys.get(id(address.key))
  }

  /** Inserts or replaces a row; the caller has checked the memory bound. */
  set(row: Row): void {
    const tId = id(row.type)
    let typeState = this.types.get(tId)
    if (typeState === undefined) {
      typeState = { name: row.type, buckets: new Map() }
      this.types.set(tId, typeState)
    }
    const bId = id(row.bucket)
    let bucketState = typeState.buckets.get(bId)
    if (bucketState === undefined) {
      bucketState = { name: row.bucket, keys: new Map() }
      typeState.buckets.set(bId, bucketState)
    }
    const kId = id(row.key)
    const previous = bucketState.keys.get(kId)
    bucketState.keys.set(kId, row)
    this.objects += previous === undefined ? 1 : 0
    this.bytes += row.size - (previous?.size ?? 0)
    this.version++
  }

  /** Removes the row at `address`; `true` when there was one. */
  remove(address: KvBackend.Address): boolean {
    const tId = id(address.type)
    const typeState = this.types.get(tId)
    const bId = id(address.bucket)
    const bucketState = typeState?.buckets.get(bId)
    const kId = id(address.key)
    const previous = bucketState?.keys.get(kId)
    if (typeState === undefined || bucketState === undefined || previous === undefined) return false
    bucketState.keys.delete(kId)
    if (bucketState.keys.size === 0) typeState.buckets.delete(bId)
    if (typeState.buckets.size === 0) this.types.delete(tId)
    this.objects--
    this.bytes -= previous.size
    this.version++
    return true
  }

  /** Every row. Rows are immutable and replaced on write, so the array is a point-in-time view. */
  rows(): Array<Row> {
    const out: Array<Row> = []
    for (const typeState of this.types.values()) {
      for (const bucketState of typeState.buckets.values()) {
        for (const row of bucketState.keys.values()) out.push(row)
      }
    }
    return out
  }

  /** Lazy key batches of a bucket (a huge bucket is never copied). */
  keyBatches(type: Uint8Array, bucket: Uint8Array, maxCount: number, maxBytes: number) {
    const bucketState = this.types.get(id(type))?.buckets.get(id(bucket))
    if (bucketState === undefined) return undefined
    return batches(mapIterator(bucketState.keys.values(), (r) => r.key), maxCount, maxBytes)
  }

  /** Lazy bucket-name batches of a type. */
  bucketBatches(type: Uint8Array, maxCount: number, maxBytes: number) {
    const typeState = this.types.get(id(type))
    if (typeState === undefined) return undefined
    return batches(mapIterator(typeState.buckets.values(), (b) => b.name), maxCount, maxBytes)
  }
}
