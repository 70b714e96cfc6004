/**
 * @warren/cli: the `warren` command line and the metrics endpoint it serves.
 *
 * @since 0.1.0
 */

/** The command tree and `run(argv)`. @since 0.1.0 */
export * as Cli from "./Cli.js"

/** `/metrics` (Prometheus text of every Effect metric) and `/healthz`. @since 0.1.0 */
export * as MetricsServer from "./MetricsServer.js"
