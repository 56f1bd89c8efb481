// Paged lists. A deployment has thousands of machines and items; answering all of them in one
// response holds the server for tens of milliseconds, so lists come in pages ordered by name:
// `limit` rows (default 100) after the name `after`. A page shorter than its limit is the last.
import { Type } from '@sinclair/typebox';

export const DEFAULT_PAGE = 100;
export const MAX_PAGE = 1000;

export const PageQuery = Type.Object({
  limit: Type.Optional(
    Type.Integer({ minimum: 1, maximum: MAX_PAGE, description: `rows per page (default ${DEFAULT_PAGE})` }),
  ),
  after: Type.Optional(Type.String({ description: 'the last name of the previous page' })),
});

export interface Page {
  limit?: number;
  after?: string;
}

export function pageLimit(p: Page): number {
  return p.limit ?? DEFAULT_PAGE;
}
