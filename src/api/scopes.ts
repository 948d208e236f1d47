// The API's rights (src/api/access.ts says which route needs which).
export const SCOPES = ['status', 'read', 'admin'] as const;
export type Scope = (typeof SCOPES)[number];
