/** The backend conformance suite against a real PostgreSQL (a fresh database per test). */
import { conformance } from "./support/conformance.js"
import { freshBackendLayer } from "./support/postgres.js"

conformance("PgBackend (PostgreSQL)", (options) => freshBackendLayer(options))
