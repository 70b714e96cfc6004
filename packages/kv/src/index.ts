/**
 * A Riak KV-compatible object service for the warren PB server.
 *
 * @since 0.1.0
 */

/** Failures of the KV store. @since 0.1.0 */
export * as KvError from "./KvError.js"

/** Riak KV's PB messages (codes 9..22, 29..30) and their codec. @since 0.1.0 */
export * as KvMessages from "./KvMessages.js"

/** The object store behind the service: Riak's semantics over a backend. @since 0.1.0 */
export * as KvStore from "./KvStore.js"

/** Bucket properties (allow_mult, last_write_wins, ...) and their defaults per bucket type. @since 0.1.0 */
export * as BucketProps from "./BucketProps.js"

/** The storage interface under the store. @since 0.1.0 */
export * as KvBackend from "./KvBackend.js"

/** The embedded backend: memory, snapshot, write-ahead log. @since 0.1.0 */
export * as EmbeddedBackend from "./EmbeddedBackend.js"

/** The Riak KV PB service (codes 9..22, 29..30) over the store. @since 0.1.0 */
export * as KvService from "./KvService.js"

/** The PostgreSQL backend: one store shared by several servers. @since 0.1.0 */
export * as PgBackend from "./PgBackend.js"

/** Which backend the store runs on (`WARREN_KV_URL`, `--store`). @since 0.1.0 */
export * as StoreConfig from "./StoreConfig.js"
