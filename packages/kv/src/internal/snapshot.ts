import { createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import protobuf from "protobufjs"
import type * as KvStore from "../KvStore.js"
import { snapshotProto } from "./schema.js"

/**
 * Snapshot file layout (all integers big-endian):
 *
 *   "WKVSNAP1"                       8 bytes magic (the trailing digit is the format version)
 *   u32 length + SnapshotHeader      server id, sequence, object count
 *   u32 length + SnapshotEntry       `objects` times
 *   u32 length + BucketPropsEntry    `bucket_props` times (absent in files written before bucket properties)
 *   sha256                           32 bytes over everything before it
 *
 * The file is written to a temporary sibling, fsynced, renamed over the target and the directory is
 * fsynced, so a crash at any point leaves either the previous snapshot or the new one, never a mix.
 */
const root: protobuf.Root = protobuf.parse(snapshotProto).root

/** The protobufjs types of the records (camel-cased field names). */
export const snapshotTypes = {
  header: root.lookupType("warren.kv.snapshot.Header"),
  entry: root.lookupType("warren.kv.snapshot.Entry"),
  logRecord: root.lookupType("warren.kv.snapshot.LogRecord"),
  content: root.lookupType("warren.kv.snapshot.Content"),
  bucketProps: root.lookupType("warren.kv.snapshot.BucketProps"),
  siblings: root.lookupType("warren.kv.snapshot.Siblings"),
  bucketPropsEntry: root.lookupType("warren.kv.snapshot.BucketPropsEntry")
} as const

const magic = Buffer.from("WKVSNAP1", "latin1")
const digestLength = 32
const flushThreshold = 1024 * 1024

/** One stored object as it is written to and read from the snapshot. */
export interface SnapshotEntry {
  readonly type: Uint8Array
  readonly bucket: Uint8Array
  readonly key: Uint8Array
  readonly vclock: Uint8Array
  readonly content: SnapshotContent
  /** The other siblings (absent or empty: one value). */
  readonly siblings?: ReadonlyArray<SnapshotContent> | undefined
}

/** The properties set on one bucket: an encoded `BucketProps` record (see bucketProps.ts). */
export interface BucketPropsEntry {
  readonly type: Uint8Array
  readonly bucket: Uint8Array
  readonly props: Uint8Array
}

/** The stored content of an object (RpbContent fields, camel-cased). */
export interface SnapshotContent {
  readonly value: Uint8Array
  readonly contentType?: Uint8Array
  readonly charset?: Uint8Array
  readonly contentEncoding?: Uint8Array
  readonly vtag?: Uint8Array
  readonly links?: ReadonlyArray<{ readonly bucket?: Uint8Array; readonly key?: Uint8Array; readonly tag?: Uint8Array }>
  readonly lastMod?: number
  readonly lastModUsecs?: number
  readonly usermeta?: ReadonlyArray<{ readonly key: Uint8Array; readonly value?: Uint8Array }>
  readonly indexes?: ReadonlyArray<{ readonly key: Uint8Array; readonly value?: Uint8Array }>
}

/** Store-wide values kept with the objects. */
export interface SnapshotHeader {
  readonly serverId: Uint8Array
  readonly sequence: number
  readonly objects: number
  /** The first log segment the snapshot does not contain (0 for snapshots written before the log). */
  readonly walSegment: number
  /** Bucket property records after the objects (0 for snapshots written before bucket properties). */
  readonly bucketProps: number
}

/** A decoded snapshot. */
export interface Snapshot {
  readonly header: SnapshotHeader
  readonly entries: ReadonlyArray<SnapshotEntry>
  readonly bucketProps: ReadonlyArray<BucketPropsEntry>
}

/** Why reading a snapshot failed. */
export class SnapshotFormatError extends Error {}

/** Prefix of the temporary files written next to `file`; leftovers of a crash carry it. */
export const tempPrefix = (file: string): string => `${path.basename(file)}.tmp-`

const record = (bytes: Uint8Array): Buffer => {
  const out = Buffer.allocUnsafe(4 + bytes.length)
  out.writeUInt32BE(bytes.length, 0)
  out.set(bytes, 4)
  return out
}

export const syncDirectory = async (dir: string): Promise<void> => {
  let handle: fs.FileHandle | undefined
  try {
    handle = await fs.open(dir, "r")
    await handle.sync()
  } catch (e) {
    // Some platforms and file systems cannot fsync a directory; the rename itself is still atomic.
    const code = (e as NodeJS.ErrnoException).code
    if (code !== "EISDIR" && code !== "EINVAL" && code !== "EPERM" && code !== "EBADF") throw e
  } finally {
    await handle?.close()
  }
}

/**
 * Writes a snapshot atomically: temp file in the same directory, fsync, rename over `file`, fsync of
 * the directory. On failure the temp file is removed and `file` is untouched.
 */
export const write = async (
  file: string,
  header: Omit<SnapshotHeader, "objects" | "walSegment" | "bucketProps"> & { readonly walSegment?: number },
  entries: ReadonlyArray<SnapshotEntry>,
  bucketProps: ReadonlyArray<BucketPropsEntry> = []
): Promise<void> => {
  const dir = path.dirname(file)
  const temp = path.join(dir, `${tempPrefix(file)}${process.pid}-${randomBytes(6).toString("hex")}`)
  const handle = await fs.open(temp, "wx", 0o600)
  let closed = false
  try {
    const hash = createHash("sha256")
    let pending: Array<Buffer> = []
    let pendingBytes = 0
    const push = async (chunk: Buffer): Promise<void> => {
      hash.update(chunk)
      pending.push(chunk)
      pendingBytes += chunk.length
      if (pendingBytes >= flushThreshold) await flush()
    }
    const flush = async (): Promise<void> => {
      if (pendingBytes === 0) return
      const chunk = Buffer.concat(pending, pendingBytes)
      pending = []
      pendingBytes = 0
      await handle.write(chunk)
    }
    await push(magic)
    const counts = bucketProps.length > 0
      ? { objects: entries.length, bucketProps: bucketProps.length }
      : { objects: entries.length }
    await push(record(snapshotTypes.header.encode({ ...header, ...counts }).finish()))
    for (const entry of entries) {
      await push(record(snapshotTypes.entry.encode(entry).finish()))
    }
    for (const entry of bucketProps) {
      await push(record(snapshotTypes.bucketPropsEntry.encode(entry).finish()))
    }
    await flush()
    await handle.write(hash.digest())
    await handle.sync()
    closed = true
    await handle.close()
    await fs.rename(temp, file)
    await syncDirectory(dir)
  } catch (e) {
    if (!closed) await handle.close().catch(() => undefined)
    await fs.rm(temp, { force: true }).catch(() => undefined)
    throw e
  }
}

const copy = (bytes: Uint8Array | undefined): Uint8Array | undefined =>
  bytes === undefined ? undefined : new Uint8Array(bytes)

/** Decodes a snapshot file's bytes; throws SnapshotFormatError when they are not a whole snapshot. */
export const decode = (bytes: Uint8Array): Snapshot => {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  if (buf.length < magic.length + digestLength) throw new SnapshotFormatError("file is too short")
  if (!buf.subarray(0, magic.length).equals(magic)) throw new SnapshotFormatError("not a warren KV snapshot")
  const bodyEnd = buf.length - digestLength
  const digest = createHash("sha256").update(buf.subarray(0, bodyEnd)).digest()
  if (!digest.equals(buf.subarray(bodyEnd))) throw new SnapshotFormatError("checksum mismatch (truncated or damaged)")
  let offset = magic.length
  const next = (): Uint8Array => {
    if (offset + 4 > bodyEnd) throw new SnapshotFormatError("record length beyond the end")
    const length = buf.readUInt32BE(offset)
    offset += 4
    if (offset + length > bodyEnd) throw new SnapshotFormatError("record beyond the end")
    const out = buf.subarray(offset, offset + length)
    offset += length
    return out
  }
  const conversion = { defaults: false, arrays: false } as const
  const rawHeader = snapshotTypes.header.toObject(snapshotTypes.header.decode(next()), conversion)
  const header: SnapshotHeader = {
    serverId: new Uint8Array(rawHeader["serverId"] as Uint8Array),
    sequence: rawHeader["sequence"] as number,
    objects: rawHeader["objects"] as number,
    walSegment: (rawHeader["walSegment"] as number | undefined) ?? 0,
    bucketProps: (rawHeader["bucketProps"] as number | undefined) ?? 0
  }
  const entries: Array<SnapshotEntry> = []
  for (let i = 0; i < header.objects; i++) {
    // protobufjs has checked the schema; copies detach the values from the file buffer.
    entries.push(decodeEntry(snapshotTypes.entry.toObject(snapshotTypes.entry.decode(next()), conversion)))
  }
  const bucketProps: Array<BucketPropsEntry> = []
  for (let i = 0; i < header.bucketProps; i++) {
    const raw = snapshotTypes.bucketPropsEntry.toObject(snapshotTypes.bucketPropsEntry.decode(next()), conversion)
    const entry = decodeBucketPropsEntry(raw)
    if (entry.props === undefined) throw new SnapshotFormatError("a bucket properties record without properties")
    bucketProps.push({ ...entry, props: entry.props })
  }
  if (offset !== bodyEnd) throw new SnapshotFormatError("trailing bytes after the last record")
  return { header, entries, bucketProps }
}

/** A decoded Entry (protobufjs has checked the schema), copied out of the file buffer. */
export const decodeEntry = (object: { readonly [k: string]: unknown }): SnapshotEntry => {
  const raw = object as unknown as SnapshotEntry
  return {
    type: new Uint8Array(raw.type),
    bucket: new Uint8Array(raw.bucket),
    key: new Uint8Array(raw.key),
    vclock: new Uint8Array(raw.vclock),
    content: copyContent(raw.content),
    siblings: raw.siblings?.map(copyContent)
  }
}

/** A decoded BucketPropsEntry, copied out of the file buffer; `props` absent means a reset. */
export const decodeBucketPropsEntry = (object: { readonly [k: string]: unknown }): {
  readonly type: Uint8Array
  readonly bucket: Uint8Array
  readonly props: Uint8Array | undefined
} => {
  const raw = object as unknown as { type: Uint8Array; bucket: Uint8Array; props?: Uint8Array }
  return {
    type: new Uint8Array(raw.type),
    bucket: new Uint8Array(raw.bucket),
    props: raw.props === undefined ? undefined : new Uint8Array(raw.props)
  }
}

/** Stored content as the store serves it: an absent vtag or timestamp reads as empty or zero. */
export const toStoreContent = (content: SnapshotContent): KvStore.Content => ({
  ...content,
  vtag: content.vtag ?? new Uint8Array(0),
  lastMod: content.lastMod ?? 0,
  lastModUsecs: content.lastModUsecs ?? 0
})

/** One object's content as a `Content` record (riak_pb's `RpbContent` layout), e.g. for another backend's rows. */
export const encodeContent = (content: KvStore.Content): Uint8Array => snapshotTypes.content.encode(content).finish()

/** A `Content` record's bytes back to content, copied out of `bytes`; absent optional fields stay absent. */
export const decodeContent = (bytes: Uint8Array): KvStore.Content =>
  toStoreContent(copyContent(
    snapshotTypes.content.toObject(snapshotTypes.content.decode(bytes), {
      defaults: false,
      arrays: false
    }) as unknown as SnapshotContent
  ))

/** The other siblings of an object as one `Siblings` record. */
export const encodeSiblings = (siblings: ReadonlyArray<KvStore.Content>): Uint8Array =>
  snapshotTypes.siblings.encode({ content: siblings }).finish()

/** A `Siblings` record back to content, copied out of `bytes`. */
export const decodeSiblings = (bytes: Uint8Array): ReadonlyArray<KvStore.Content> => {
  // `arrays: false`, like every other record here: an absent repeated field stays absent (not `[]`).
  const raw = snapshotTypes.siblings.toObject(snapshotTypes.siblings.decode(bytes), { defaults: false, arrays: false })
  const contents = (raw["content"] as ReadonlyArray<SnapshotContent> | undefined) ?? []
  return contents.map((c) => toStoreContent(copyContent(c)))
}

const copyContent = (c: SnapshotContent): SnapshotContent => {
  const out: {
    -readonly [K in keyof SnapshotContent]: SnapshotContent[K]
  } = { value: new Uint8Array(c.value) }
  if (c.contentType !== undefined) out.contentType = new Uint8Array(c.contentType)
  if (c.charset !== undefined) out.charset = new Uint8Array(c.charset)
  if (c.contentEncoding !== undefined) out.contentEncoding = new Uint8Array(c.contentEncoding)
  if (c.vtag !== undefined) out.vtag = new Uint8Array(c.vtag)
  if (c.lastMod !== undefined) out.lastMod = c.lastMod
  if (c.lastModUsecs !== undefined) out.lastModUsecs = c.lastModUsecs
  if (c.links !== undefined) {
    out.links = c.links.map((l) => {
      const link: { bucket?: Uint8Array; key?: Uint8Array; tag?: Uint8Array } = {}
      const bucket = copy(l.bucket)
      const key = copy(l.key)
      const tag = copy(l.tag)
      if (bucket !== undefined) link.bucket = bucket
      if (key !== undefined) link.key = key
      if (tag !== undefined) link.tag = tag
      return link
    })
  }
  const pairs = (ps: ReadonlyArray<{ readonly key: Uint8Array; readonly value?: Uint8Array }>) =>
    ps.map((p) => {
      const value = copy(p.value)
      return value === undefined ? { key: new Uint8Array(p.key) } : { key: new Uint8Array(p.key), value }
    })
  if (c.usermeta !== undefined) out.usermeta = pairs(c.usermeta)
  if (c.indexes !== undefined) out.indexes = pairs(c.indexes)
  return out
}

/** Reads and decodes `file`; `undefined` when it does not exist. */
export const read = async (file: string): Promise<Snapshot | undefined> => {
  let bytes: Buffer
  try {
    bytes = await fs.readFile(file)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined
    throw e
  }
  return decode(bytes)
}

/** Whether the process that named a temp file `<pid>-<random>` is still running (then it is not a leftover). */
const writerAlive = (suffix: string): boolean => {
  const pid = Number.parseInt(suffix.split("-")[0] ?? "", 10)
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) return false
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"
  }
}

/** Removes temp files a crashed writer left next to `file` (not those of a live process); returns their names. */
export const removeLeftovers = async (file: string): Promise<ReadonlyArray<string>> => {
  const dir = path.dirname(file)
  const prefix = tempPrefix(file)
  let names: Array<string>
  try {
    names = await fs.readdir(dir)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return []
    throw e
  }
  const leftovers = names.filter((name) => name.startsWith(prefix) && !writerAlive(name.slice(prefix.length)))
  for (const name of leftovers) await fs.rm(path.join(dir, name), { force: true })
  return leftovers
}
