/**
 * Builds a service's `decode` and `encode` from protobufjs message types and a code table, so a service only
 * writes `process`.
 *
 * ```ts
 * interface Messages {
 *   RpbPingReq: {}
 *   RpbPingResp: {}
 *   RpbGetServerInfoReq: {}
 *   RpbGetServerInfoResp: RiakPb.RpbGetServerInfoResp
 * }
 * const codec = PbCodec.make<Messages>(RiakPb.schema(), {
 *   RpbPingReq: PbCodec.codeOnly(1),
 *   RpbPingResp: PbCodec.codeOnly(2),
 *   RpbGetServerInfoReq: PbCodec.codeOnly(7),
 *   RpbGetServerInfoResp: 8
 * })
 * codec.decode(1, new Uint8Array()) // decoded({ _tag: "RpbPingReq" })
 * codec.encode(codec.message("RpbPingResp", {})) // Either.right(Uint8Array [2])
 * ```
 *
 * Decoding skips unknown fields (newer clients may send them) and fails on a missing required field; encoding
 * verifies the message first, so proto2 required fields are always written. Field names are kept as written in
 * the .proto file (`server_version`, not `serverVersion`).
 *
 * @since 0.1.0
 */
import * as Either from "effect/Either"
import * as NodeFs from "node:fs"
import * as NodeUrl from "node:url"
import protobuf from "protobufjs"
import * as PbService from "./PbService.js"

/**
 * A protobufjs root holding the parsed message types.
 *
 * @since 0.1.0
 * @category models
 */
export type ProtoRoot = protobuf.Root

/**
 * Parses .proto files (proto2 or proto3) into one root, keeping field names as written. All files share one
 * namespace, so a file may use types of another one loaded with it (`import` statements are not followed: list
 * every file). Throws when a file cannot be read or parsed: call it while building the program, not per request.
 *
 * @since 0.1.0
 * @category constructors
 */
export const loadProtoFiles = (files: ReadonlyArray<string | URL>): ProtoRoot => {
  const root = new protobuf.Root()
  for (const file of files) {
    const path = typeof file === "string" ? file : NodeUrl.fileURLToPath(file)
    protobuf.parse(NodeFs.readFileSync(path, "utf8"), root, { keepCase: true })
  }
  root.resolveAll()
  return root
}

/**
 * Parses .proto source text into one root (see `loadProtoFiles`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const parseProto = (sources: ReadonlyArray<string>): ProtoRoot => {
  const root = new protobuf.Root()
  for (const source of sources) protobuf.parse(source, root, { keepCase: true })
  root.resolveAll()
  return root
}

/**
 * A message of the table: its fields plus `_tag`, the message name.
 *
 * @since 0.1.0
 * @category models
 */
export type Message<M, K extends keyof M> = { readonly _tag: K } & M[K]

/**
 * Any message of the table.
 *
 * @since 0.1.0
 * @category models
 */
export type AnyMessage<M> = { [K in keyof M]: Message<M, K> }[keyof M]

/**
 * The code of a message with no body (`RpbPingReq`, `RpbDelResp`, ...).
 *
 * @since 0.1.0
 * @category models
 */
export interface CodeOnly {
  readonly _tag: "CodeOnly"
  readonly code: number
}

/**
 * Marks a table entry as a message with no body: it has no protobuf type, only a code.
 *
 * @since 0.1.0
 * @category constructors
 */
export const codeOnly = (code: number): CodeOnly => ({ _tag: "CodeOnly", code })

/**
 * For each message name, its code: a number for a message whose type has that name in the root, or `codeOnly`.
 *
 * @since 0.1.0
 * @category models
 */
export type CodeTable<M> = { readonly [K in keyof M]: number | CodeOnly }

/**
 * `decode` and `encode` for a table of messages.
 *
 * @since 0.1.0
 * @category models
 */
export interface Codec<M> {
  /** The code of each message. */
  readonly codes: { readonly [K in keyof M]: number }
  /** The smallest and largest code of the table (the range to register). */
  readonly minCode: number
  readonly maxCode: number
  /** A `PbService` `decode`: the message named by `code`, tagged with its name. */
  readonly decode: (code: number, body: Uint8Array) => PbService.DecodeResult<AnyMessage<M>>
  /** A `PbService` `encode`: the code byte followed by the body; `Either.left` with a reason when invalid. */
  readonly encode: (message: AnyMessage<M>) => Either.Either<Uint8Array, string>
  /** Tags `fields` with the message name. */
  readonly message: <K extends keyof M>(name: K, fields: M[K]) => Message<M, K>
}

interface Entry {
  readonly name: string
  readonly code: number
  readonly type: protobuf.Type | undefined
  /** The encoding of a code-only message (the same bytes every time: only read, never modified). */
  readonly codeOnly: Uint8Array
  /** A code-only message decodes to, and encodes from, the same values every time: built once. */
  readonly decodedCodeOnly: PbService.DecodeResult<unknown>
  readonly encodedCodeOnly: Either.Either<Uint8Array, string>
}

const conversion: protobuf.IConversionOptions = { arrays: true, longs: Number }

/**
 * Builds the codec of a table. Throws when a non-code-only name has no message type in `root`, when a code is
 * outside 0..255 or when two names share a code (programming errors, found when the module loads).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <M>(root: ProtoRoot, table: CodeTable<M>): Codec<M> => {
  const byCode = new Map<number, Entry>()
  const byName = new Map<string, Entry>()
  const codes: Record<string, number> = {}
  for (const name of Object.keys(table)) {
    const spec: number | CodeOnly = table[name as keyof M]
    const code = typeof spec === "number" ? spec : spec.code
    if (!Number.isInteger(code) || code < 0 || code > 255) {
      throw new RangeError(`PbCodec: code ${code} of ${name} is not in 0..255`)
    }
    if (byCode.has(code)) throw new RangeError(`PbCodec: code ${code} is used by ${byCode.get(code)!.name} and ${name}`)
    const type = typeof spec === "number" ? root.lookupType(name) : undefined
    const codeOnly = Uint8Array.of(code)
    const entry: Entry = {
      name,
      code,
      type,
      codeOnly,
      decodedCodeOnly: PbService.decoded(Object.freeze({ _tag: name })),
      encodedCodeOnly: Either.right(codeOnly)
    }
    byCode.set(code, entry)
    byName.set(name, entry)
    codes[name] = code
  }
  const all = [...byCode.keys()]
  const decode = (code: number, body: Uint8Array): PbService.DecodeResult<AnyMessage<M>> => {
    const entry = byCode.get(code)
    if (entry === undefined) return PbService.decodeFailed(`no message with code ${code}`)
    if (entry.type === undefined) return entry.decodedCodeOnly as PbService.DecodeResult<AnyMessage<M>>
    let fields: { [k: string]: unknown }
    try {
      fields = entry.type.toObject(entry.type.decode(body), conversion)
    } catch (cause) {
      return PbService.decodeFailed(cause instanceof Error ? cause.message : cause)
    }
    // The runtime shape is the protobuf type's, which the table's TypeScript type describes.
    return PbService.decoded({ _tag: entry.name, ...fields } as AnyMessage<M>)
  }
  const encode = (message: AnyMessage<M>): Either.Either<Uint8Array, string> => {
    const entry = byName.get(message._tag as string)
    if (entry === undefined) return Either.left(`no message named ${String(message._tag)}`)
    if (entry.type === undefined) return entry.encodedCodeOnly
    const invalid = entry.type.verify(message)
    if (invalid !== null) return Either.left(`${entry.name}: ${invalid}`)
    let body: Uint8Array
    try {
      body = entry.type.encode(message).finish()
    } catch (cause) {
      return Either.left(`${entry.name}: ${cause instanceof Error ? cause.message : String(cause)}`)
    }
    const bytes = new Uint8Array(body.length + 1)
    bytes[0] = entry.code
    bytes.set(body, 1)
    return Either.right(bytes)
  }
  return {
    codes: codes as { readonly [K in keyof M]: number },
    minCode: Math.min(...all),
    maxCode: Math.max(...all),
    decode,
    encode,
    message: (name, fields) => ({ _tag: name, ...fields })
  }
}
