// Parameters for infra/main.bicep. PLACEHOLDERS ONLY: replace every '<...>' value before deploying
// (a copy outside the repository is a good place for the real values), and never put a secret in this file.
//
//   az deployment group create -g <rg> -f infra/main.bicep -p infra/main.bicepparam
//
// Secrets: leave them out of the deployment and set them afterwards with `az keyvault secret set` (docs/deploy.md),
// or export the BRIDGE_* variables read below in the shell that runs the deployment; an empty value creates no
// Key Vault secret and leaves an existing one alone.
using './main.bicep'

// --- deployment shape ------------------------------------------------------------------------------------------
param appName = '<function-app-name>'
// 'both', 'cf-to-halo' (ContraForce -> Halo only) or 'halo-to-cf' (Halo -> ContraForce only).
param directions = 'both'
// true: the handler also reads its secrets from Key Vault directly (sets KEY_VAULT_URI).
param directKeyVaultReads = false

// --- Halo API (both directions) ------------------------------------------------------------------------------
param haloAuthUrl = '<https://yourname.halopsa.com/auth>'
param haloApiBaseUrl = '<https://yourname.halopsa.com/api>'
param haloClientId = '<halo-api-application-client-id>'
// Hosted Halo: your tenant name; '' otherwise.
param haloTenant = ''
// 'thirdpartynumber' continues tickets created by Logic App 01; new installs can keep 'supplier_reference'.
param haloExternalRefField = 'supplier_reference'

// --- ContraForce -> Halo (directions 'both' or 'cf-to-halo') ----------------------------------------------------
param haloDefaultTicketTypeId = '<halo-tickettype-id>'
param haloDefaultClientId = '<halo-client-id>'

// --- Halo -> ContraForce (directions 'both' or 'halo-to-cf') ----------------------------------------------------
param cfApiBaseUrl = '<https://your-env.platform.contraforce.com/api/v2>'
param cfServiceAccountClientId = '<cf-service-account-client-id>'
param cfWorkspaceId = '<cf-workspace-id>'
param haloClosedStatusId = '9'

// --- secrets (optional here; see above) -------------------------------------------------------------------------
param cfWebhookSecret = readEnvironmentVariable('BRIDGE_CF_WEBHOOK_SECRET', '')
param haloClientSecret = readEnvironmentVariable('BRIDGE_HALO_CLIENT_SECRET', '')
param haloWebhookSecret = readEnvironmentVariable('BRIDGE_HALO_WEBHOOK_SECRET', '')
param cfServiceAccountClientSecret = readEnvironmentVariable('BRIDGE_CF_SERVICE_ACCOUNT_CLIENT_SECRET', '')
