/**
 * The embedded `KvBackend`: every object in memory, and with a data file a snapshot plus a write-ahead
 * log on local disk, locked against a second server on the same files.
 *
 * @since 0.1.0
 */
import type * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as internal from "./internal/embedded.js"
import * as logWriter from "./internal/logWriter.js"
import { KvBackend } from "./KvBackend.js"
import type * as Backend from "./KvBackend.js"
import type { Options, StartError } from "./KvStore.js"

/**
 * Builds the backend: loads the data files (when configured) and keeps them until the scope closes.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: (options?: Options) => Effect.Effect<Backend.Backend, StartError, Scope.Scope> = internal.make

/**
 * The backend as a layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options?: Options): Layer.Layer<KvBackend, StartError> => Layer.scoped(KvBackend, make(options))

/**
 * The write-ahead log's counters: `warren_kv_wal_fsyncs` (fdatasync calls), `warren_kv_wal_records`
 * (records appended) and `warren_kv_wal_writes` (group-commit rounds). Records per fsync shows how much
 * group commit is sharing.
 *
 * @since 0.1.0
 * @category metrics
 */
export const metrics = logWriter.metrics
