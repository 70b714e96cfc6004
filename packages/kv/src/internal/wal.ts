/**
 * The write-ahead log of the embedded backend: numbered segment files next to the snapshot
 * (`<file>.wal-000000000007`), each a magic followed by records
 *
 *   u32 length | u32 CRC-32 of the payload | payload (a protobuf LogRecord: a put or a remove)
 *
 * (big-endian). Segments are allocated ahead in zero-filled steps, so zeros up to the end of the file
 * are the clean end of the log. Reading stops at the first record that is incomplete or fails its
 * checksum: the torn tail a crash in the middle of an append leaves.
 */
import * as fs from "node:fs/promises"
import * as path from "node:path"
import * as zlib from "node:zlib"
import type * as KvBackend from "../KvBackend.js"
import { decodeBucketPropsEntry, decodeEntry, type SnapshotEntry, snapshotTypes } from "./snapshot.js"

/** Written at the start of every segment; the digits are the format version. */
export const magic = Buffer.from("WKVLOG01", "latin1")
const headerBytes = 8
/** Larger lengths cannot come from a writer (PB frames are far smaller): they are damage. */
const maxRecordBytes = 1024 * 1024 * 1024
const readChunkBytes = 1024 * 1024

/** One logged change. */
export type LogOp =
  | { readonly _tag: "Put"; readonly entry: SnapshotEntry }
  | { readonly _tag: "Remove"; readonly address: KvBackend.Address }
  /** A bucket's properties set (`props`: an encoded `BucketProps` record) or reset (`props` undefined). */
  | {
    readonly _tag: "BucketProps"
    readonly type: Uint8Array
    readonly bucket: Uint8Array
    readonly props: Uint8Array | undefined
  }

/** A segment file found on disk. */
export interface Segment {
  readonly generation: number
  readonly path: string
}

const prefix = (file: string): string => `${path.basename(file)}.wal-`

/** The path of segment `generation` of `file`'s log. */
export const segmentPath = (file: string, generation: number): string =>
  path.join(path.dirname(file), `${prefix(file)}${String(generation).padStart(12, "0")}`)

/** The segments of `file`'s log, oldest first. */
export const listSegments = async (file: string): Promise<Array<Segment>> => {
  const dir = path.dirname(file)
  let names: Array<string>
  try {
    names = await fs.readdir(dir)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return []
    throw e
  }
  const p = prefix(file)
  return names
    .filter((name) => name.startsWith(p) && /^\d+$/.test(name.slice(p.length)))
    .map((name) => ({ generation: Number(name.slice(p.length)), path: path.join(dir, name) }))
    .sort((a, b) => a.generation - b.generation)
}

/** One record: its header and its payload (written back to back). */
export const encode = (op: LogOp): readonly [Uint8Array, Uint8Array] => {
  const message = op._tag === "Put"
    ? { put: op.entry }
    : op._tag === "Remove"
    ? { remove: op.address }
    : {
      bucketProps: op.props === undefined
        ? { type: op.type, bucket: op.bucket }
        : { type: op.type, bucket: op.bucket, props: op.props }
    }
  const payload = snapshotTypes.logRecord.encode(message).finish()
  const header = Buffer.allocUnsafe(headerBytes)
  header.writeUInt32BE(payload.length, 0)
  header.writeUInt32BE(zlib.crc32(payload), 4)
  return [header, payload]
}

/** One record as a single buffer. */
export const encodeRecord = (op: LogOp): Buffer => Buffer.concat(encode(op))

const conversion = { defaults: false, arrays: false } as const

const decodeOp = (payload: Uint8Array): LogOp | undefined => {
  try {
    const raw = snapshotTypes.logRecord.toObject(snapshotTypes.logRecord.decode(payload), conversion)
    const put = raw["put"] as { readonly [k: string]: unknown } | undefined
    const remove = raw["remove"] as KvBackend.Address | undefined
    const props = raw["bucketProps"] as { readonly [k: string]: unknown } | undefined
    const present = [put, remove, props].filter((f) => f !== undefined).length
    if (present !== 1) return undefined
    if (props !== undefined) return { _tag: "BucketProps", ...decodeBucketPropsEntry(props) }
    if (put !== undefined) return { _tag: "Put", entry: decodeEntry(put) }
    if (remove !== undefined) {
      return {
        _tag: "Remove",
        address: {
          type: new Uint8Array(remove.type),
          bucket: new Uint8Array(remove.bucket),
          key: new Uint8Array(remove.key)
        }
      }
    }
    return undefined
  } catch {
    return undefined
  }
}

/** What reading a segment found. */
export interface ReadResult {
  readonly records: number
  /** Bytes of the magic plus the whole, valid records. */
  readonly validBytes: number
  readonly fileBytes: number
  /** Why reading stopped before the end of the file, if it did. */
  readonly problem: string | undefined
}

/** Reads a segment in bounded chunks, calling `apply` for each valid record, up to the first bad one. */
export const read = async (file: string, apply: (op: LogOp) => void): Promise<ReadResult> => {
  const handle = await fs.open(file, "r")
  try {
    const fileBytes = (await handle.stat()).size
    let buffer = Buffer.alloc(0)
    let position = 0
    /** Makes at least `n` unread bytes available in `buffer` (fewer at the end of the file). */
    const fill = async (n: number): Promise<void> => {
      if (buffer.length >= n || position >= fileBytes) return
      const want = Math.max(n - buffer.length, readChunkBytes)
      const chunk = Buffer.allocUnsafe(Math.min(want, fileBytes - position))
      let got = 0
      while (got < chunk.length) {
        const { bytesRead } = await handle.read(chunk, got, chunk.length - got, position + got)
        if (bytesRead === 0) break
        got += bytesRead
      }
      position += got
      buffer = buffer.length === 0 ? chunk.subarray(0, got) : Buffer.concat([buffer, chunk.subarray(0, got)])
      if (buffer.length < n) await fill(n)
    }
    await fill(headerBytes)
    if (buffer.length < headerBytes || !buffer.subarray(0, headerBytes).equals(magic)) {
      return { records: 0, validBytes: 0, fileBytes, problem: "the segment header is incomplete or foreign" }
    }
    buffer = buffer.subarray(headerBytes)
    let validBytes = headerBytes
    let records = 0
    /** Whether everything from the current record to the end of the file is zero (allocated, never written). */
    const restIsZero = async (): Promise<boolean> => {
      for (;;) {
        for (const byte of buffer) if (byte !== 0) return false
        buffer = Buffer.alloc(0)
        if (position >= fileBytes) return true
        await fill(1)
      }
    }
    for (;;) {
      await fill(headerBytes)
      if (buffer.length === 0) return { records, validBytes, fileBytes, problem: undefined }
      if (buffer[0] === 0 && (await restIsZero())) return { records, validBytes, fileBytes, problem: undefined }
      if (buffer.length < headerBytes) {
        return { records, validBytes, fileBytes, problem: "a record header is incomplete" }
      }
      const length = buffer.readUInt32BE(0)
      const crc = buffer.readUInt32BE(4)
      if (length === 0 || length > maxRecordBytes) {
        return { records, validBytes, fileBytes, problem: `a record has an impossible length ${length}` }
      }
      await fill(headerBytes + length)
      if (buffer.length < headerBytes + length) {
        return { records, validBytes, fileBytes, problem: "the last record is incomplete" }
      }
      const payload = buffer.subarray(headerBytes, headerBytes + length)
      if (zlib.crc32(payload) !== crc) return { records, validBytes, fileBytes, problem: "a record fails its checksum" }
      const op = decodeOp(payload)
      if (op === undefined) return { records, validBytes, fileBytes, problem: "a record does not decode" }
      apply(op)
      records++
      validBytes += headerBytes + length
      buffer = buffer.subarray(headerBytes + length)
    }
  } finally {
    await handle.close()
  }
}
