/** Basho's stock Riak PB client for Node (basho-riak-client 2.4.0, which ships no types), as Effects. */
import { Effect } from "effect"
import { createRequire } from "node:module"

/** The parts of basho-riak-client the tests use. */
export interface RiakObjectLike {
  readonly value: Buffer
  readonly contentType: string
  readonly vclock: Buffer
}
export interface FetchResult {
  readonly isNotFound: boolean
  readonly values: ReadonlyArray<RiakObjectLike>
  readonly vclock: Buffer
}
/** What `fetchBucketProps` reports (the parts the tests read). */
export interface BucketPropsResult {
  readonly nVal: number
  readonly allowMult: boolean
  readonly lastWriteWins: boolean
  readonly r: number
  readonly notFoundOk: boolean
  readonly precommit: ReadonlyArray<unknown>
  readonly chashKeyfun?: { readonly mod: string; readonly fun: string }
}
export type Callback<A> = (error: unknown, result: A) => void
export interface RiakClient {
  storeValue(
    options: Record<string, unknown>,
    callback: Callback<{ readonly generatedKey?: string; readonly values: ReadonlyArray<RiakObjectLike> }>
  ): void
  fetchValue(options: Record<string, unknown>, callback: Callback<FetchResult>): void
  deleteValue(options: Record<string, unknown>, callback: Callback<boolean>): void
  listBuckets(options: Record<string, unknown>, callback: Callback<{ readonly buckets: ReadonlyArray<string> }>): void
  listKeys(options: Record<string, unknown>, callback: Callback<{ readonly keys: ReadonlyArray<string> }>): void
  fetchBucketProps(options: Record<string, unknown>, callback: Callback<BucketPropsResult>): void
  storeBucketProps(options: Record<string, unknown>, callback: Callback<boolean>): void
  resetBucketProps(options: Record<string, unknown>, callback: Callback<boolean>): void
  ping(callback: Callback<boolean>): void
  stop(callback: Callback<unknown>): void
}
interface RiakModule {
  readonly Client: new(nodes: ReadonlyArray<string>, callback: Callback<RiakClient>) => RiakClient
}

const Riak = createRequire(import.meta.url)("basho-riak-client") as RiakModule

export const promised = <A>(f: (callback: Callback<A>) => void): Effect.Effect<A, Error> =>
  Effect.async<A, Error>((resume) => {
    f((error, result) =>
      resume(error ? Effect.fail(error instanceof Error ? error : new Error(String(error))) : Effect.succeed(result))
    )
  })

export const riakClient = (port: number) =>
  Effect.acquireRelease(
    promised<RiakClient>((cb) => new Riak.Client([`127.0.0.1:${port}`], cb)),
    (client) => promised((cb) => client.stop(cb)).pipe(Effect.ignore)
  )
