// Routes: registration of agents, process servers and master targets (anyone may call; the
// passphrase proof is the credential). See registration/protocol.ts for the handshake.
import { randomBytes, randomUUID, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Type } from '@sinclair/typebox';
import type { Kysely } from 'kysely';
import { issueCertForKey } from '../../../pki/ca.js';
import { checkName, leafFileBase } from '../../../pki/roles.js';
import type { ServerContext } from '../../context.js';
import type { Database } from '../../db/schema.js';
import { DEFAULT_HEARTBEAT_SECONDS } from '../../heartbeat-contract.js';
import { syncDisks } from '../../machines-store.js';
import { loadVerifier } from '../../registration/passphrase.js';
import {
  type Challenge,
  clientTranscript,
  mac,
  OS_TYPES,
  type RegistrationAnswer,
  type RegistrationRequest,
  ROLES_THAT_REGISTER,
  sameMac,
  serverTranscript,
} from '../../registration/protocol.js';
import { FailureLimiter } from '../../registration/rate-limit.js';
import { SERVER_CERT_NAME, serverPaths } from '../../server-identity.js';
import type { Api } from '../app.js';
import { DiskListSchema } from '../disk-schema.js';
import { ApiError, badRequest, conflict, notFound } from '../errors.js';
import { ErrorSchema } from '../schemas.js';

/** A challenge is answered within this time, once. */
export const CHALLENGE_TTL_MS = 120_000;
const MAX_OPEN_CHALLENGES = 10_000;
const UUID = '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$';

const ChallengeSchema = Type.Object({
  challengeId: Type.String(),
  nonce: Type.String(),
  salt: Type.String(),
  kdf: Type.Object({
    name: Type.Literal('scrypt'),
    N: Type.Integer(),
    r: Type.Integer(),
    p: Type.Integer(),
    keyLength: Type.Integer(),
  }),
});

const RegisterBody = Type.Object(
  {
    challengeId: Type.String({ maxLength: 64 }),
    role: Type.Union(ROLES_THAT_REGISTER.map((r) => Type.Literal(r))),
    name: Type.String({ maxLength: 64 }),
    osType: Type.Optional(Type.String({ maxLength: 16 })),
    machineId: Type.Optional(Type.String({ pattern: UUID })),
    site: Type.Optional(Type.String({ maxLength: 64 })),
    address: Type.Optional(Type.String({ maxLength: 300 })),
    disks: Type.Optional(DiskListSchema),
    publicKey: Type.String({ maxLength: 4096 }),
    clientNonce: Type.String({ maxLength: 64 }),
    proof: Type.String({ maxLength: 128 }),
  },
  { additionalProperties: false },
);

const AnswerSchema = Type.Object({
  role: Type.String(),
  name: Type.String(),
  machineId: Type.Optional(Type.String()),
  certificate: Type.String(),
  ca: Type.String(),
  reregistered: Type.Boolean(),
  heartbeatSeconds: Type.Number(),
  serverProof: Type.String(),
});

interface OpenChallenge extends Challenge {
  expires: number;
}

function tooMany(address: string, ms: number): ApiError {
  const seconds = Math.ceil(ms / 1000);
  return new ApiError(
    429,
    'too-many-attempts',
    `too many wrong passphrase attempts from ${address}: try again in ${seconds} s`,
    { retryAfterSeconds: seconds },
  );
}

export async function registerRegistrationRoutes(app: Api, ctx: ServerContext): Promise<void> {
  const challenges = new Map<string, OpenChallenge>();
  const limiter = new FailureLimiter(5, 60_000);
  let fingerprint: string | undefined;
  const serverFingerprint = async () => {
    fingerprint ??= new X509Certificate(
      await readFile(
        join(
          serverPaths(ctx.dataDir).tlsDir,
          `${leafFileBase({ role: 'configuration-server', name: SERVER_CERT_NAME })}.crt`,
        ),
      ),
    ).fingerprint256;
    return fingerprint;
  };
  const refuseIfBlocked = (ip: string, reply: { header(k: string, v: string): unknown }) => {
    const ms = limiter.blockedFor(ip, Date.now());
    if (ms > 0) {
      reply.header('retry-after', String(Math.ceil(ms / 1000)));
      throw tooMany(ip, ms);
    }
  };

  app.post(
    '/api/v1/registration/challenge',
    {
      config: { access: ['anyone'] },
      schema: {
        tags: ['registration'],
        summary: 'start a registration: a one-time challenge and the passphrase key parameters',
        response: { 200: ChallengeSchema, 429: ErrorSchema },
      },
    },
    async (req, reply) => {
      refuseIfBlocked(req.ip, reply);
      const verifier = await loadVerifier(ctx);
      if (!verifier)
        throw new ApiError(503, 'no-passphrase', 'the server has no registration passphrase yet');
      const now = Date.now();
      for (const [id, c] of challenges) if (c.expires <= now) challenges.delete(id);
      if (challenges.size >= MAX_OPEN_CHALLENGES) {
        const oldest = challenges.keys().next().value;
        if (oldest !== undefined) challenges.delete(oldest);
      }
      const c: OpenChallenge = {
        challengeId: randomUUID(),
        nonce: randomBytes(32).toString('base64'),
        salt: verifier.salt,
        kdf: verifier.kdf,
        expires: now + CHALLENGE_TTL_MS,
      };
      challenges.set(c.challengeId, c);
      return { challengeId: c.challengeId, nonce: c.nonce, salt: c.salt, kdf: c.kdf };
    },
  );

  app.post(
    '/api/v1/registration',
    {
      config: { access: ['anyone'] },
      schema: {
        tags: ['registration'],
        summary: 'register a component: passphrase proof in, certificate and CA out',
        body: RegisterBody,
        response: {
          200: AnswerSchema,
          400: ErrorSchema,
          401: ErrorSchema,
          404: ErrorSchema,
          409: ErrorSchema,
          429: ErrorSchema,
        },
      },
    },
    async (req, reply) => {
      refuseIfBlocked(req.ip, reply);
      const body = req.body as RegistrationRequest;
      const challenge = challenges.get(body.challengeId);
      challenges.delete(body.challengeId);
      if (!challenge || challenge.expires <= Date.now()) {
        throw badRequest(
          `registration challenge ${body.challengeId} is unknown or expired (a challenge is good for ` +
            `${CHALLENGE_TTL_MS / 1000} s, once): register again`,
        );
      }
      const verifier = await loadVerifier(ctx);
      const key = Buffer.from(verifier?.key ?? '', 'base64');
      const { proof, ...signed } = body;
      const expected = mac(key, clientTranscript(challenge, await serverFingerprint(), signed));
      if (!verifier || verifier.salt !== challenge.salt || !sameMac(proof, expected)) {
        limiter.recordFailure(req.ip, Date.now());
        req.log.warn({ from: req.ip, role: body.role, name: body.name }, 'registration: wrong passphrase');
        throw new ApiError(
          401,
          'wrong-passphrase',
          "the registration passphrase is wrong: ask the configuration server's operator for the " +
            "current one ('rebound server passphrase' on the server)",
        );
      }
      const answer = await register(ctx, body);
      const serverProof = mac(key, serverTranscript(proof, answer));
      req.log.info(
        { from: req.ip, role: answer.role, name: answer.name, reregistered: answer.reregistered },
        'component registered',
      );
      return {
        ...answer,
        heartbeatSeconds: DEFAULT_HEARTBEAT_SECONDS,
        serverProof,
      } satisfies RegistrationAnswer;
    },
  );
}

function validate(r: RegistrationRequest): void {
  try {
    checkName(r.name);
  } catch (e) {
    throw badRequest((e as Error).message);
  }
  if (r.role === 'agent') {
    if (!r.osType || !(OS_TYPES as readonly string[]).includes(r.osType)) {
      throw badRequest(`OS type '${r.osType ?? ''}' is not known: use one of ${OS_TYPES.join(', ')}`);
    }
    if (!r.machineId) throw badRequest('an agent must send its machine id');
  } else if (r.osType || r.machineId || r.site || r.disks) {
    throw badRequest(
      `a ${r.role} registers with a name and an address only (no OS type, machine id, site or disks)`,
    );
  }
}

type Registered = Omit<RegistrationAnswer, 'serverProof' | 'heartbeatSeconds'>;

/** Checks, issues the certificate, then writes the rows in one transaction: all or nothing. */
async function register(ctx: ServerContext, r: RegistrationRequest): Promise<Registered> {
  validate(r);
  let issued: Awaited<ReturnType<typeof issueCertForKey>>;
  try {
    issued = await issueCertForKey(ctx.caDir, { role: r.role, name: r.name, publicKeyPem: r.publicKey });
  } catch (e) {
    throw badRequest((e as Error).message);
  }
  const now = ctx.now();
  const reregistered = await ctx.db
    .transaction()
    .execute(async (trx) => (r.role === 'agent' ? recordAgent(trx, r, now) : recordComponent(trx, r, now)));
  return {
    role: r.role,
    name: r.name,
    machineId: r.role === 'agent' ? r.machineId : undefined,
    certificate: issued.certPem,
    ca: issued.caPem,
    reregistered,
  };
}

/** The agent's machine row (its id is the agent's machine id) and its disks. True if it existed. */
async function recordAgent(db: Kysely<Database>, r: RegistrationRequest, now: string): Promise<boolean> {
  const machineId = r.machineId!;
  const byId = await db.selectFrom('machines').selectAll().where('id', '=', machineId).executeTakeFirst();
  if (byId && byId.name !== r.name) {
    throw conflict(
      `machine id ${machineId} is already registered as machine '${byId.name}': '${r.name}' looks like ` +
        `a clone of it (same agent data dir); give '${r.name}' a fresh agent data dir`,
      { machineId, machine: byId.name },
    );
  }
  const byName = await db
    .selectFrom('machines')
    .selectAll()
    .where((eb) => eb.or([eb('name', '=', r.name), eb('agent_name', '=', r.name)]))
    .executeTakeFirst();
  if (byName && byName.id !== machineId) {
    throw conflict(
      `machine '${r.name}' is already registered with another machine id (${byName.id}, not ${machineId}): ` +
        `choose another --name, or remove it first with 'rebound machines remove ${r.name}'`,
      { machine: r.name },
    );
  }
  let siteId: string | null = byName?.site_id ?? null;
  if (r.site) {
    const site = await db.selectFrom('sites').select('id').where('name', '=', r.site).executeTakeFirst();
    if (!site) throw notFound(`site '${r.site}'`);
    siteId = site.id;
  }
  const machine = { id: machineId, name: r.name };
  if (byName) {
    await db
      .updateTable('machines')
      .set({
        os_type: r.osType!,
        agent_name: r.name,
        site_id: siteId,
        address: r.address ?? byName.address,
        registered_at: now,
      })
      .where('id', '=', machineId)
      .execute();
  } else {
    await db
      .insertInto('machines')
      .values({
        id: machineId,
        name: r.name,
        site_id: siteId,
        os_type: r.osType!,
        agent_name: r.name,
        address: r.address ?? null,
        registered_at: now,
        last_heartbeat_at: null,
        status_json: null,
        created_by_failover_of: null,
        created_at: now,
      })
      .execute();
  }
  if (r.disks) await syncDisks(db, machine, r.disks, now);
  return Boolean(byName);
}

/** A process server's or master target's row. True if it existed. */
async function recordComponent(db: Kysely<Database>, r: RegistrationRequest, now: string): Promise<boolean> {
  const table = r.role === 'process-server' ? 'process_servers' : 'master_targets';
  const existing = await db
    .selectFrom(table)
    .select(['id', 'builtin', 'address'])
    .where('name', '=', r.name)
    .executeTakeFirst();
  if (existing?.builtin) {
    throw conflict(`'${r.name}' is the configuration server's built-in ${r.role}: choose another --name`);
  }
  if (existing) {
    await db
      .updateTable(table)
      .set({ registered_at: now, address: r.address ?? existing.address })
      .where('id', '=', existing.id)
      .execute();
    return true;
  }
  await db
    .insertInto(table)
    .values({
      id: randomUUID(),
      name: r.name,
      address: r.address ?? null,
      builtin: 0,
      registered_at: now,
      last_heartbeat_at: null,
      status_json: null,
    })
    .execute();
  return false;
}
