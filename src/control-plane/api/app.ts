// The HTTPS API: one Fastify instance, TLS 1.3, client certificates requested but optional
// (people use the admin token; components their certificates; registration neither), an
// OpenAPI document at /openapi.json, and one error shape for every failure.
import swagger from '@fastify/swagger';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyInstance, LogController } from 'fastify';
import type { ServerContext } from '../context.js';
import { ApiError, type ErrorBody } from './errors.js';
import { type Access, allowed, describePrincipal, type Principal, principalOf } from './principal.js';
import { registerRoutes } from './routes/index.js';

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal;
  }
  interface FastifyContextConfig {
    /** Who may call this route; default admin only. */
    access?: readonly Access[];
  }
}

export interface TlsOptions {
  key: Buffer;
  cert: Buffer;
  ca: Buffer;
}

export type Api = FastifyInstance<
  import('node:https').Server,
  import('node:http').IncomingMessage,
  import('node:http').ServerResponse,
  import('fastify').FastifyBaseLogger,
  TypeBoxTypeProvider
>;

export async function buildApi(ctx: ServerContext, tls: TlsOptions): Promise<Api> {
  const app = Fastify({
    loggerInstance: ctx.logger,
    logController: new LogController({ disableRequestLogging: true }),
    https: {
      key: tls.key,
      cert: tls.cert,
      ca: tls.ca,
      requestCert: true,
      rejectUnauthorized: false,
      minVersion: 'TLSv1.3',
    },
    bodyLimit: 1024 * 1024,
  }).withTypeProvider<TypeBoxTypeProvider>() as unknown as Api;

  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: { title: 'Rebound configuration server', version: '1' },
      components: {
        securitySchemes: { adminToken: { type: 'http', scheme: 'bearer' } },
      },
      security: [{ adminToken: [] }],
    },
  });

  app.decorateRequest('principal', null as unknown as { getter: () => Principal });
  app.addHook('onRequest', async (req) => {
    req.principal = principalOf(req, ctx.adminTokenHashes);
    const access = req.routeOptions.config?.access ?? ['admin'];
    if (!allowed(req.principal, access)) {
      if (req.principal.kind === 'anonymous') {
        throw new ApiError(401, 'unauthorized', `not authenticated: ${req.principal.reason}`);
      }
      throw new ApiError(
        403,
        'forbidden',
        `${describePrincipal(req.principal)} may not call ${req.method} ${req.routeOptions.url}`,
      );
    }
  });

  app.setErrorHandler((err: Error & { statusCode?: number; code?: string }, req, reply) => {
    let status: number;
    let body: ErrorBody;
    if (err instanceof ApiError) {
      status = err.statusCode;
      body = { error: { code: err.code, message: err.message, details: err.details } };
    } else if ((err as { validation?: unknown }).validation) {
      status = 400;
      body = { error: { code: 'bad-request', message: `invalid request: ${err.message}` } };
    } else if (typeof err.statusCode === 'number' && err.statusCode < 500) {
      status = err.statusCode;
      body = { error: { code: err.code ?? 'bad-request', message: err.message } };
    } else {
      status = 500;
      req.log.error({ err, url: req.url }, 'request failed');
      body = { error: { code: 'internal', message: err.message } };
    }
    void reply.status(status).send(body);
  });
  app.setNotFoundHandler((req, reply) => {
    void reply.status(404).send({
      error: { code: 'not-found', message: `no route ${req.method} ${req.url}` },
    } satisfies ErrorBody);
  });

  app.get('/openapi.json', { config: { access: ['anyone'] }, schema: { hide: true } }, async () =>
    app.swagger(),
  );
  await registerRoutes(app, ctx);
  return app;
}
