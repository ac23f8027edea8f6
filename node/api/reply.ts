/** The API's error answer, `{error: {code, message}}` with a 4xx/5xx status (node/api.ts). */
import type { FastifyReply } from 'fastify'

export function fail(reply: FastifyReply, status: number, code: string, message: string) {
  return reply.code(status).send({ error: { code, message } })
}
