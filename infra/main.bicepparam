// Parameters for infra/main.bicep. PLACEHOLDERS ONLY: never put a real value or a secret in this file.
//
// Copy it NEXT TO IT under the git-ignored name main.local.bicepparam (its `using './main.bicep'` then still resolves),
// replace every '<...>' there, and deploy without -f (Azure CLI 2.53+ takes the template from `using`, and refuses
// -f together with a .bicepparam file):
//
//   cp infra/main.bicepparam infra/main.local.bicepparam
//   az deployment group create -g <rg> -n main -p infra/main.local.bicepparam
//
// Secrets: leave them out of the deployment and set them afterwards with `az keyvault secret set` (docs/deploy.md),
// or export the BRIDGE_* variables read below in the shell that runs the deployment (required in private mode, where
// the vault is not reachable from outside its virtual network); an empty value creates no Key Vault secret and leaves
// an existing one alone.
using './main.bicep'

// --- deployment shape ------------------------------------------------------------------------------------------
param appName = '<function-app-name>'
// 'both', 'cf-webhook' (ContraForce -> Halo only) or 'halo-webhook' (Halo -> ContraForce only).
param directions = 'both'
// true: the handler also reads its secrets from Key Vault directly (sets KEY_VAULT_URI).
param directKeyVaultReads = false
// 'public' (storage and Key Vault on public endpoints, identity-only) or 'private' (virtual network, private endpoints,
// public network access off; docs/deploy.md, "Private mode").
param networkMode = 'public'
// Inbound allow-list (CIDR), e.g. ['203.0.113.10/32']; both empty: no address restriction.
param contraForceEgressAddresses = []
param haloEgressAddresses = []
// Alerts by e-mail (docs/operations.md); '' = they show in Azure Monitor only.
param alertEmail = ''

// --- Halo API (both directions) ------------------------------------------------------------------------------
param haloAuthUrl = '<https://yourname.halopsa.com/auth>'
param haloApiBaseUrl = '<https://yourname.halopsa.com/api>'
param haloClientId = '<halo-api-application-client-id>'
// Hosted Halo: your tenant name; '' otherwise.
param haloTenant = ''
// The only ticket field accepted (Logic App 01's 'thirdpartynumber' is read from old tickets, never written).
param haloExternalRefField = 'supplier_reference'

// --- ContraForce -> Halo (directions 'both' or 'cf-webhook') ----------------------------------------------------
param haloDefaultTicketTypeId = '<halo-tickettype-id>'
param haloDefaultClientId = '<halo-client-id>'

// --- Halo -> ContraForce (directions 'both' or 'halo-webhook') ----------------------------------------------------
param cfApiBaseUrl = '<https://your-env.platform.contraforce.com/api/v2>'
param cfServiceAccountClientId = '<cf-service-account-client-id>'
param cfWorkspaceId = '<cf-workspace-id>'
param haloClosedStatusId = '9'

// --- status page and run history (both directions) ---------------------------------------------------------------
// Halo's web address for the status page's ticket links, e.g. 'https://yourname.halopsa.com'; '' = no links.
param haloWebUrl = ''
// Days each delivery's run record is kept (1-365).
param runRetentionDays = 30

// --- secrets (optional here; see above) -------------------------------------------------------------------------
param cfWebhookSecret = readEnvironmentVariable('BRIDGE_CF_WEBHOOK_SECRET', '')
param haloClientSecret = readEnvironmentVariable('BRIDGE_HALO_CLIENT_SECRET', '')
param haloWebhookSecret = readEnvironmentVariable('BRIDGE_HALO_WEBHOOK_SECRET', '')
param cfServiceAccountClientSecret = readEnvironmentVariable('BRIDGE_CF_SERVICE_ACCOUNT_CLIENT_SECRET', '')
// The status page's key (Key Vault secret status-page-key): a long random value you choose.
param statusPageKey = readEnvironmentVariable('BRIDGE_STATUS_PAGE_KEY', '')
