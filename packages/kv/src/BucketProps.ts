/**
 * Bucket properties: the per-bucket settings Riak clients read and write with codes 19..22 and 29..30.
 * warren honours `allowMult` (concurrent writes are kept as siblings) and `lastWriteWins` (a write replaces
 * the object without merging clocks); the others are stored and returned so stock clients work, but one
 * node has no quorums or vclock pruning to apply them to.
 *
 * A bucket's properties are its type's defaults plus what was set on the bucket (`Overrides`), kept by the
 * backend, so every server on a shared backend sees the same properties.
 *
 * @since 0.1.0
 */

/**
 * A quorum setting: a node count or one of Riak's symbolic values.
 *
 * @since 0.1.0
 * @category models
 */
export type Quorum = number | "one" | "quorum" | "all" | "default"

/**
 * A bucket's effective properties.
 *
 * @since 0.1.0
 * @category models
 */
export interface BucketProps {
  readonly nVal: number
  /** Keep concurrent writes as siblings (honoured). */
  readonly allowMult: boolean
  /** A write replaces the object, ignoring its clock (honoured; never together with `allowMult`). */
  readonly lastWriteWins: boolean
  readonly oldVclock: number
  readonly youngVclock: number
  readonly bigVclock: number
  readonly smallVclock: number
  readonly pr: Quorum
  readonly r: Quorum
  readonly w: Quorum
  readonly pw: Quorum
  readonly dw: Quorum
  readonly rw: Quorum
  readonly basicQuorum: boolean
  readonly notfoundOk: boolean
}

/**
 * The properties set on one bucket, over its type's defaults.
 *
 * @since 0.1.0
 * @category models
 */
export type Overrides = { readonly [K in keyof BucketProps]?: BucketProps[K] }

const base: BucketProps = {
  nVal: 3,
  allowMult: false,
  lastWriteWins: false,
  oldVclock: 86400,
  youngVclock: 20,
  bigVclock: 50,
  smallVclock: 50,
  pr: 0,
  r: "quorum",
  w: "quorum",
  pw: 0,
  dw: "quorum",
  rw: "quorum",
  basicQuorum: false,
  notfoundOk: true
}

const typed: BucketProps = { ...base, allowMult: true }

const defaultName = [0x64, 0x65, 0x66, 0x61, 0x75, 0x6c, 0x74] // "default"

const isDefaultType = (type: Uint8Array | undefined): boolean =>
  type === undefined || (type.length === defaultName.length && defaultName.every((b, i) => type[i] === b))

/**
 * The defaults of a bucket type, as Riak 2 has them: the `default` type (and an absent type) keeps one value
 * per key (`allowMult: false`); every other type keeps siblings (`allowMult: true`), like a bucket type
 * created with `riak-admin bucket-type create` without properties.
 *
 * @since 0.1.0
 * @category constructors
 */
export const defaults = (type: Uint8Array | undefined): BucketProps => isDefaultType(type) ? base : typed

/**
 * A bucket's effective properties: its type's defaults with `overrides` applied.
 *
 * @since 0.1.0
 * @category constructors
 */
export const resolve = (type: Uint8Array | undefined, overrides: Overrides): BucketProps => {
  const out: { -readonly [K in keyof BucketProps]: BucketProps[K] } = { ...defaults(type) }
  for (const name of Object.keys(overrides) as Array<keyof BucketProps>) {
    const value = overrides[name]
    if (value !== undefined) (out as Record<string, unknown>)[name] = value
  }
  return out
}
