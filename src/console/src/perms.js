// The role x permission matrix of docs/permissions.md, to show each action only to who may do it. The
// server decides: when it still refuses (a 403), the page shows its problem detail.

export const ROLES = ["owner", "admin", "member", "viewer"];

const PERMISSIONS = {
  owner: ["org:read", "org:manage", "members:manage", "keys:manage_own", "keys:manage_all", "models:invoke",
    "usage:read", "audit:read"],
  admin: ["org:read", "members:manage", "keys:manage_own", "keys:manage_all", "models:invoke", "usage:read",
    "audit:read"],
  member: ["org:read", "keys:manage_own", "models:invoke", "usage:read"],
  viewer: ["org:read", "usage:read"],
};

/** Whether `user` acting with `role` in an org holds `permission` (platform admins hold every one). */
export function can(user, role, permission) {
  if (user && user.platform_admin) return true;
  return Boolean(role && PERMISSIONS[role] && PERMISSIONS[role].includes(permission));
}

/** Roles `user` with `role` may grant: none above their own (only owners grant owner). */
export function grantableRoles(user, role) {
  if (user && user.platform_admin) return ROLES;
  const rank = ROLES.indexOf(role);
  return rank < 0 ? [] : ROLES.slice(rank);
}
