// ContraForce <-> HaloPSA bridge: one Azure Functions custom handler (`handler`) on a Flex Consumption plan.
//
// Deploy at resource-group scope with a parameter file kept next to this file (its `using './main.bicep'` resolves
// here; Bicep refuses `-f` together with a .bicepparam file):
//   cp infra/main.bicepparam infra/main.local.bicepparam      # git-ignored; fill in the '<...>' values
//   az deployment group create -g <rg> -n main -p infra/main.local.bicepparam
// then publish the package built by scripts/package (see docs/deploy.md).
//
// Names: Bicep has no regular-expression decorator, so each name parameter carries the length limits of every name
// derived from it (@minLength/@maxLength, checked before anything is deployed) and its character rules are checked by
// `nameProblems` below; the rule of each resource type is written next to the parameter
// (https://learn.microsoft.com/azure/azure-resource-manager/management/resource-name-rules).
//
// Plain resources only (no registry modules), so `bicep build` needs nothing but this file.
// The app settings set below are exactly the settings `handler --list-settings` names (minus the connection-string
// forms StateStorage and AzureWebJobsStorage, which are replaced by identity-based settings) plus the host's own
// AzureWebJobsStorage__blobServiceUri/__queueServiceUri and APPLICATIONINSIGHTS_* settings; tests/infra checks this.

targetScope = 'resourceGroup'

// ---------------------------------------------------------------------------------------------------------------
// Deployment shape
// ---------------------------------------------------------------------------------------------------------------

// Rules (resource-name-rules): sites 2-60, alphanumerics and hyphens, not starting or ending with a hyphen;
// serverfarms 'plan-<appName>' 1-60 (so appName <= 55); Log Analytics 'log-<appName>' 4-63, alphanumerics and hyphens,
// starting and ending with an alphanumeric; private endpoints 'pe-<appName>-vault' 2-64; virtual network 'vnet-<appName>'
// 2-64; user-assigned identity 'id-<appName>' 3-128; Application Insights, action group and alert names 1-260.
@description('Name of the function app (globally unique: it becomes <appName>.azurewebsites.net). 2-55 letters, digits and hyphens, not starting or ending with a hyphen (55: plan-<appName> must fit in 60).')
@minLength(2)
@maxLength(55)
param appName string

@description('Azure region of every resource.')
param location string = resourceGroup().location

@description('Which direction(s) to deploy. The other direction\'s settings and secrets are left out; its route then answers 503 naming what is missing.')
@allowed([
  'both'
  'cf-webhook'
  'halo-webhook'
])
param directions string = 'both'

// Rule (resource-name-rules, Microsoft.KeyVault/vaults): 3-24, alphanumerics and hyphens, starting with a letter, ending
// with a letter or digit, no two hyphens in a row; globally unique, and a soft-deleted vault keeps its name.
@description('Name of the Key Vault: 3-24 letters, digits and hyphens, starting with a letter, ending with a letter or digit, no "--". Change it when a soft-deleted vault of that name still exists (purge protection keeps it for 90 days; docs/deploy.md).')
@minLength(3)
@maxLength(24)
param keyVaultName string = 'kv-${uniqueString(resourceGroup().id, appName)}'

// Rule (resource-name-rules, Microsoft.Storage/storageAccounts): 3-24 lowercase letters and digits, globally unique.
@description('Name of the storage account: 3-24 lowercase letters and digits.')
@minLength(3)
@maxLength(24)
param storageAccountName string = 'st${uniqueString(resourceGroup().id, appName)}'

@description('When true, KEY_VAULT_URI is set and the handler reads its secrets from Key Vault itself (refreshed every KEY_VAULT_REFRESH_SECONDS) instead of relying only on Key Vault references.')
param directKeyVaultReads bool = false

@description('Flex Consumption: memory of one instance, in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 512

@description('Flex Consumption: most instances the app scales out to (a low value also caps the load on the Halo API).')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Log Analytics retention, in days.')
@minValue(30)
@maxValue(730)
param logRetentionInDays int = 30

@description('Tags put on every resource that takes tags (names up to 512 characters, values up to 256; none of < > % & \\ ? /).')
param tags object = {
  workload: 'contraforce-halopsa-bridge'
}

// ---------------------------------------------------------------------------------------------------------------
// Network
// ---------------------------------------------------------------------------------------------------------------

@description('public: storage and Key Vault answer on their public endpoints (identity-only access). private: the app is integrated into a virtual network created here, storage (blob, queue, table) and Key Vault are reached through private endpoints with private DNS zones, their public network access is off, and the app\'s outbound traffic leaves through a NAT gateway with one static address.')
@allowed([
  'public'
  'private'
])
param networkMode string = 'public'

@description('private mode: address space of the virtual network.')
param vnetAddressPrefix string = '10.90.0.0/16'

@description('private mode: subnet delegated to Microsoft.App/environments for the Flex Consumption app (one address per instance: size it for maximumInstanceCount).')
param appSubnetPrefix string = '10.90.0.0/24'

@description('private mode: subnet of the private endpoints (blob, queue, table, vault).')
param privateEndpointSubnetPrefix string = '10.90.1.0/24'

@description('Inbound allow-list: ContraForce\'s egress addresses (CIDR, e.g. 203.0.113.10/32). When this list or haloEgressAddresses is not empty, the site answers only these addresses and haloEgressAddresses; both empty: no restriction (the function keys and the webhook signatures still apply).')
param contraForceEgressAddresses array = []

@description('Inbound allow-list: Halo\'s egress addresses (CIDR). See contraForceEgressAddresses.')
param haloEgressAddresses array = []

// ---------------------------------------------------------------------------------------------------------------
// Alerts
// ---------------------------------------------------------------------------------------------------------------

@description('E-mail address that receives the alerts (an action group is created for it); empty: the alerts fire in Azure Monitor only.')
param alertEmail string = ''

@description('Handler 5xx alert: the share of requests answered 5xx, in percent, above which it fires (over 15 minutes).')
@minValue(1)
@maxValue(100)
param http5xxPercentThreshold int = 5

@description('Handler 5xx alert: fewest requests in the 15-minute window for the share to count (avoids firing on one failed request).')
@minValue(1)
param http5xxMinimumRequests int = 5

// ---------------------------------------------------------------------------------------------------------------
// Secrets. Each Key Vault secret is created only when its value is given here; otherwise set it later with
// `az keyvault secret set` (a redeploy with an empty value leaves the secret alone).
// ---------------------------------------------------------------------------------------------------------------

@secure()
@description('ContraForce webhook signing secret (cf-webhook). Empty: set Key Vault secret cf-webhook-secret yourself.')
param cfWebhookSecret string = ''

@secure()
@description('Halo API application client secret (both directions). Empty: set Key Vault secret halo-client-secret yourself.')
param haloClientSecret string = ''

@secure()
@description('Secret Halo sends in X-Halo-Secret or as the Basic auth password (halo-webhook). Empty: set Key Vault secret halo-webhook-secret yourself.')
param haloWebhookSecret string = ''

@secure()
@description('ContraForce service account client secret (halo-webhook). Empty: set Key Vault secret cf-service-account-client-secret yourself.')
param cfServiceAccountClientSecret string = ''

@secure()
@description('Key of the status page (GET /api/status, both directions): a long random value you choose; the page itself checks it and answers 401 without it. Empty: set Key Vault secret status-page-key yourself.')
param statusPageKey string = ''

// ---------------------------------------------------------------------------------------------------------------
// Halo API (both directions)
// ---------------------------------------------------------------------------------------------------------------

@description('HALO_AUTH_URL: Halo authorisation server, e.g. https://yourname.halopsa.com/auth.')
param haloAuthUrl string

@description('HALO_API_BASE_URL: Halo resource server, e.g. https://yourname.halopsa.com/api.')
param haloApiBaseUrl string

@description('HALO_CLIENT_ID: client id of the Halo API application (Client ID and Secret (Services)).')
param haloClientId string

@description('HALO_TENANT: Halo tenant name (hosted Halo); empty for none.')
param haloTenant string = ''

@description('HALO_SCOPE: OAuth scope of the Halo token.')
param haloScope string = 'all'

@description('HALO_RATE_LIMIT: the most Halo API calls one instance starts in any HALO_RATE_WINDOW_SECONDS (hosted Halo allows about 300 per 5 minutes, shared with your other tools; instances do not share this limit).')
@minValue(1)
@maxValue(10000)
param haloRateLimit int = 200

@description('HALO_RATE_WINDOW_SECONDS: the rolling window of HALO_RATE_LIMIT, in seconds.')
@minValue(1)
@maxValue(3600)
param haloRateWindowSeconds int = 300

@description('HALO_EXTERNAL_REF_FIELD: ticket field that carries cf|source|incidentId. thirdpartynumber (Logic App 01) is not a Halo ticket field and is refused; old tickets that carry it are still read.')
@allowed([
  'supplier_reference'
])
param haloExternalRefField string = 'supplier_reference'

@description('HALO_EXTERNAL_REF_FIELD_ID: custom field id that carries the reference instead; empty for none.')
param haloExternalRefFieldId string = ''

// ---------------------------------------------------------------------------------------------------------------
// ContraForce -> Halo (cf-webhook)
// ---------------------------------------------------------------------------------------------------------------

@description('HALO_DEFAULT_TICKETTYPE_ID: Halo ticket type id for new tickets (required for cf-webhook).')
param haloDefaultTicketTypeId string = ''

@description('HALO_DEFAULT_CLIENT_ID: Halo client id for incidents whose CF account is not in HALO_CLIENT_MAP (required for cf-webhook).')
param haloDefaultClientId string = ''

@description('HALO_CLIENT_MAP: <CF accountId>=<Halo client id>[/<site id>],...; empty for none.')
param haloClientMap string = ''

@description('HALO_CLIENT_MATCH_BY_NAME: route an unmapped account to the one Halo client of exactly its name (true/false).')
param haloClientMatchByName bool = false

@description('HALO_CLIENT_NAME_CACHE_SECONDS: how long a client name match is kept before Halo is asked again.')
@minValue(1)
param haloClientNameCacheSeconds int = 86400

@description('CF_WORKSPACE_MAP: <CF accountId>=<ContraForce workspace id>,...; empty: every incident in CF_WORKSPACE_ID.')
param cfWorkspaceMap string = ''

@description('HALO_PRIORITY_MAP: CF severity -> Halo priority_id.')
param haloPriorityMap string = 'High=1,Medium=2,Low=3,Informational=3'

@description('HALO_PRIVATE_NOTE_OUTCOME: outcome of the private note added for a later event (a number is an outcome_id).')
param haloPrivateNoteOutcome string = 'Private Note'

@description('CF_MAX_SKEW_SECONDS: largest accepted distance between X-CF-Timestamp and now.')
@minValue(1)
param cfMaxSkewSeconds int = 300

@description('CF_PROCESS_TEST_EVENTS: process portal test deliveries like real events.')
param cfProcessTestEvents bool = false

// ---------------------------------------------------------------------------------------------------------------
// Halo -> ContraForce (halo-webhook)
// ---------------------------------------------------------------------------------------------------------------

@description('CF_API_BASE_URL: ContraForce API, e.g. https://prod.platform.contraforce.com/api/v2 (required for halo-webhook).')
param cfApiBaseUrl string = ''

@description('CF_SERVICE_ACCOUNT_CLIENT_ID: client id of the ContraForce service account (required for halo-webhook).')
param cfServiceAccountClientId string = ''

@description('CF_WORKSPACE_ID: ContraForce workspace id (required for halo-webhook).')
param cfWorkspaceId string = ''

@description('HALO_CLOSED_STATUS_ID: Halo status id(s) that mean closed, comma-separated.')
param haloClosedStatusId string = '9'

@description('HALO_INTEGRATION_AGENT_ID: agent id the Halo API application logs in as (its actions are not echoed back); empty for none.')
param haloIntegrationAgentId string = ''

@description('HALO_INTEGRATION_APPLICATION: name of the Halo API application (its actions are not echoed back); empty for none.')
param haloIntegrationApplication string = ''

@description('CF_CLOSE_CLASSIFICATION: classification sent when a Halo close closes the CF incident.')
param cfCloseClassification string = 'Undetermined'

@description('CF_CLOSE_CLASSIFICATION_REASON: classification reason sent with the close.')
param cfCloseClassificationReason string = 'InaccurateData'

@description('HALO_CLOSE_DECISION_MAP: <Halo status id>=<Classification>[/<Reason>],... (the analyst\'s decision a closing status stands for); empty for none.')
param haloCloseDecisionMap string = ''

@description('HALO_CLASSIFICATION_FIELD_ID: id of a Halo custom field holding <Classification>[/<Reason>]; empty for none.')
param haloClassificationFieldId string = ''

@description('RECONCILE_SCHEDULE: when the reconcile timer runs (NCRONTAB, six fields, UTC on Flex Consumption); it catches the Halo webhooks that never arrived.')
param reconcileSchedule string = '0 */5 * * * *'

@description('RECONCILE_HALO_CALLS: the most Halo API calls one reconcile run makes (hosted Halo allows about 300 per 5 minutes, shared with other tools).')
@minValue(1)
@maxValue(300)
param reconcileHaloCalls int = 30

@description('RECONCILE_REQUEUE_AFTER_SECONDS: queued work untouched this long has lost its queue message and is queued again by the reconcile.')
@minValue(1)
param reconcileRequeueAfterSeconds int = 3600

// ---------------------------------------------------------------------------------------------------------------
// Run history and the status page (both directions)
// ---------------------------------------------------------------------------------------------------------------

@description('HALO_WEB_URL: the Halo web address the status page links tickets to, e.g. https://yourname.halopsa.com; empty: ticket numbers without links.')
param haloWebUrl string = ''

@description('RUN_RETENTION_DAYS: how many days the run history (one record per delivery, read by the status page) is kept; older records are deleted.')
@minValue(1)
@maxValue(365)
param runRetentionDays int = 30

// ---------------------------------------------------------------------------------------------------------------
// State, Key Vault reads, general
// ---------------------------------------------------------------------------------------------------------------

// Rule (resource-name-rules, storageAccounts/tableServices/tables): 3-63 alphanumerics, starting with a letter.
@description('STATE_TABLE_NAME: the Table Storage table holding the bridge state (created here). 3-63 letters and digits, starting with a letter.')
@minLength(3)
@maxLength(63)
param stateTableName string = 'bridgestate'

@description('KEY_VAULT_REFRESH_SECONDS: how often secrets are re-read when directKeyVaultReads is true.')
@minValue(1)
param keyVaultRefreshSeconds int = 300

@description('SECRET_ROTATION_GRACE_SECONDS: how long a rotated webhook secret\'s previous value stays accepted.')
@minValue(0)
param secretRotationGraceSeconds int = 86400

@description('LOG_LEVEL: error, warn, info, debug (a tracing filter).')
param logLevel string = 'info'

@description('UPSTREAM_TIMEOUT_SECONDS: timeout of one Halo or ContraForce call.')
@minValue(1)
param upstreamTimeoutSeconds int = 10

@description('CLAIM_TTL_SECONDS: after this long, work claimed by a delivery that never finished is taken over.')
@minValue(1)
param claimTtlSeconds int = 60

@description('INLINE_BUDGET_SECONDS: how long a webhook is worked on inline before the rest is queued (answered 200 queued).')
@minValue(1)
@maxValue(20)
param inlineBudgetSeconds int = 5

// ---------------------------------------------------------------------------------------------------------------
// Names and constants
// ---------------------------------------------------------------------------------------------------------------

var cfWebhookEnabled = directions != 'halo-webhook'
var haloWebhookEnabled = directions != 'cf-webhook'

// The defaults of the *_SECRET_NAME settings.
var secretNames = {
  cfWebhook: 'cf-webhook-secret'
  haloClient: 'halo-client-secret'
  haloWebhook: 'halo-webhook-secret'
  cfServiceAccountClient: 'cf-service-account-client-secret'
  statusPage: 'status-page-key'
}

var deploymentContainerName = 'app-package'

// Durable work (docs/durable-work.md): the queue the handler enqueues to and the work-items queue trigger reads, and
// the queue the Functions host moves a message to after maxDequeueCount failed attempts (always '<queue>-poison', read
// by the dead-letters trigger). Both are created here so the dead-letter alert and the queue role come with them.
var workQueueName = 'work-items'
var poisonQueueName = '${workQueueName}-poison'

// Built-in role definition ids.
var roleIds = {
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

var privateNetworking = networkMode == 'private'

// Every name derived from a parameter.
var names = {
  identity: 'id-${appName}'
  logAnalytics: 'log-${appName}'
  appInsights: 'appi-${appName}'
  plan: 'plan-${appName}'
  vnet: 'vnet-${appName}'
  appSubnet: 'snet-app'
  privateEndpointSubnet: 'snet-private-endpoints'
  appSubnetNsg: 'nsg-${appName}-app'
  privateEndpointSubnetNsg: 'nsg-${appName}-pe'
  natGateway: 'nat-${appName}'
  natPublicIp: 'pip-${appName}-nat'
  actionGroup: 'ag-${appName}'
  alert5xx: 'alert-${appName}-handler-5xx'
  alertDeadLetters: 'alert-${appName}-dead-letters'
  alertRestarts: 'alert-${appName}-handler-restarts'
}

// Private DNS zones of the private endpoints (Azure public cloud names).
var privateDnsZoneNames = {
  blob: 'privatelink.blob.${environment().suffixes.storage}'
  queue: 'privatelink.queue.${environment().suffixes.storage}'
  table: 'privatelink.table.${environment().suffixes.storage}'
  vault: 'privatelink.vaultcore.azure.net'
}

// ---------------------------------------------------------------------------------------------------------------
// Character rules of the names (the length rules are the parameters' decorators). A string has only characters of a set
// when splitting it at every character of the set leaves length + 1 empty pieces.
// ---------------------------------------------------------------------------------------------------------------

var lowerLetters = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', 'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z']
var digits = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']
var lowerAlphanumerics = concat(lowerLetters, digits)
var lowerAlphanumericsAndHyphen = concat(lowerAlphanumerics, ['-'])

// Each clause in parentheses: pycep-parser, which the offline tests and checkov use, gets && / == / + precedence wrong.
var appNameValid = (length(split(toLower(appName), lowerAlphanumericsAndHyphen)) == (length(appName) + 1)) && (!startsWith(appName, '-')) && (!endsWith(appName, '-'))
var keyVaultNameValid = (length(split(toLower(keyVaultName), lowerAlphanumericsAndHyphen)) == (length(keyVaultName) + 1)) && (contains(lowerLetters, first(toLower(keyVaultName)))) && (!endsWith(keyVaultName, '-')) && (!contains(keyVaultName, '--'))
var storageAccountNameValid = (length(split(storageAccountName, lowerAlphanumerics)) == (length(storageAccountName) + 1))
var stateTableNameValid = (length(split(toLower(stateTableName), lowerAlphanumerics)) == (length(stateTableName) + 1)) && (contains(lowerLetters, first(toLower(stateTableName))))

var appNameProblem = appNameValid ? [] : ['appName must be letters, digits and hyphens, not starting or ending with a hyphen']
var keyVaultNameProblem = keyVaultNameValid ? [] : ['keyVaultName must be letters, digits and hyphens, start with a letter, end with a letter or digit, and have no two hyphens in a row']
var storageAccountNameProblem = storageAccountNameValid ? [] : ['storageAccountName must be lowercase letters and digits only']
var stateTableNameProblem = stateTableNameValid ? [] : ['stateTableName must be letters and digits, starting with a letter']
var nameProblems = concat(appNameProblem, keyVaultNameProblem, storageAccountNameProblem, stateTableNameProblem)

// Evaluated with the identity's name, which every other resource waits on, so a bad name stops the deployment at
// template validation, before anything is created: the error names the missing property, i.e. the first problem.
var noProperties = json('{}')
var nameCheck = empty(nameProblems) ? '' : noProperties[first(nameProblems)]

// ---------------------------------------------------------------------------------------------------------------
// Identity (created first; every role below is granted to it before the app starts)
// ---------------------------------------------------------------------------------------------------------------

resource uami 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: '${names.identity}${nameCheck}'
  location: location
  tags: tags
}

// ---------------------------------------------------------------------------------------------------------------
// Monitoring
// ---------------------------------------------------------------------------------------------------------------

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: names.logAnalytics
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: logRetentionInDays
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: names.appInsights
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalytics.id
    DisableLocalAuth: true
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Storage: host storage, deployment container and the state table (identity-based access only)
// ---------------------------------------------------------------------------------------------------------------

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    defaultToOAuthAuthentication: true
    // private: reachable only through the private endpoints below.
    publicNetworkAccess: privateNetworking ? 'Disabled' : 'Enabled'
    networkAcls: {
      defaultAction: privateNetworking ? 'Deny' : 'Allow'
      bypass: privateNetworking ? 'None' : 'AzureServices'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource stateTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: stateTableName
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource workQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: workQueueName
}

resource poisonQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: poisonQueueName
}

// Queue writes (PutMessage, ...) go to Log Analytics: the dead-letter alert looks for messages put on the poison queue.
resource queueDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'queue-writes-to-log-analytics'
  scope: queueService
  properties: {
    workspaceId: logAnalytics.id
    logs: [
      {
        category: 'StorageWrite'
        enabled: true
      }
    ]
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Key Vault (RBAC, soft delete, purge protection, audit log) and its secrets
// ---------------------------------------------------------------------------------------------------------------

resource keyVault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: keyVaultName
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    // private: reachable only through the private endpoint below (secrets given to this template are written through
    // Azure Resource Manager, which the firewall does not stop).
    publicNetworkAccess: privateNetworking ? 'Disabled' : 'Enabled'
    networkAcls: {
      defaultAction: privateNetworking ? 'Deny' : 'Allow'
      bypass: 'AzureServices'
    }
  }
}

// Every data-plane operation on the vault (who read or set which secret, from where) goes to Log Analytics.
resource keyVaultDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'audit-to-log-analytics'
  scope: keyVault
  properties: {
    workspaceId: logAnalytics.id
    logs: [
      {
        category: 'AuditEvent'
        enabled: true
      }
    ]
    metrics: [
      {
        category: 'AllMetrics'
        enabled: true
      }
    ]
  }
}

resource cfWebhookSecretResource 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (cfWebhookEnabled && !empty(cfWebhookSecret)) {
  parent: keyVault
  name: secretNames.cfWebhook
  tags: tags
  properties: {
    value: cfWebhookSecret
    contentType: 'text/plain; ContraForce webhook signing secret'
  }
}

resource haloClientSecretResource 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(haloClientSecret)) {
  parent: keyVault
  name: secretNames.haloClient
  tags: tags
  properties: {
    value: haloClientSecret
    contentType: 'text/plain; Halo API application client secret'
  }
}

resource haloWebhookSecretResource 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (haloWebhookEnabled && !empty(haloWebhookSecret)) {
  parent: keyVault
  name: secretNames.haloWebhook
  tags: tags
  properties: {
    value: haloWebhookSecret
    contentType: 'text/plain; Halo webhook shared secret'
  }
}

resource cfServiceAccountClientSecretResource 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (haloWebhookEnabled && !empty(cfServiceAccountClientSecret)) {
  parent: keyVault
  name: secretNames.cfServiceAccountClient
  tags: tags
  properties: {
    value: cfServiceAccountClientSecret
    contentType: 'text/plain; ContraForce service account client secret'
  }
}

// The status page serves both directions, so its key is created whatever `directions` is.
resource statusPageKeySecretResource 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(statusPageKey)) {
  parent: keyVault
  name: secretNames.statusPage
  tags: tags
  properties: {
    value: statusPageKey
    contentType: 'text/plain; status page key'
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Private networking (networkMode 'private'): virtual network, NAT gateway, private endpoints and their DNS zones
// ---------------------------------------------------------------------------------------------------------------

resource appSubnetNsg 'Microsoft.Network/networkSecurityGroups@2024-05-01' = if (privateNetworking) {
  name: names.appSubnetNsg
  location: location
  tags: tags
  properties: {
    securityRules: []
  }
}

resource privateEndpointSubnetNsg 'Microsoft.Network/networkSecurityGroups@2024-05-01' = if (privateNetworking) {
  name: names.privateEndpointSubnetNsg
  location: location
  tags: tags
  properties: {
    securityRules: []
  }
}

// One static outbound address for the calls to Halo and ContraForce (Flex routes all of an integrated app's outbound
// traffic through the virtual network; new subnets get no default outbound access).
resource natPublicIp 'Microsoft.Network/publicIPAddresses@2024-05-01' = if (privateNetworking) {
  name: names.natPublicIp
  location: location
  tags: tags
  sku: {
    name: 'Standard'
  }
  properties: {
    publicIPAllocationMethod: 'Static'
    publicIPAddressVersion: 'IPv4'
  }
}

resource natGateway 'Microsoft.Network/natGateways@2024-05-01' = if (privateNetworking) {
  name: names.natGateway
  location: location
  tags: tags
  sku: {
    name: 'Standard'
  }
  properties: {
    publicIpAddresses: [
      {
        id: natPublicIp.id
      }
    ]
  }
}

resource vnet 'Microsoft.Network/virtualNetworks@2024-05-01' = if (privateNetworking) {
  name: names.vnet
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        vnetAddressPrefix
      ]
    }
    subnets: [
      {
        name: names.appSubnet
        properties: {
          addressPrefix: appSubnetPrefix
          defaultOutboundAccess: false
          networkSecurityGroup: {
            id: appSubnetNsg.id
          }
          natGateway: {
            id: natGateway.id
          }
          delegations: [
            {
              name: 'flex-consumption'
              properties: {
                serviceName: 'Microsoft.App/environments'
              }
            }
          ]
        }
      }
      {
        name: names.privateEndpointSubnet
        properties: {
          addressPrefix: privateEndpointSubnetPrefix
          defaultOutboundAccess: false
          networkSecurityGroup: {
            id: privateEndpointSubnetNsg.id
          }
          privateEndpointNetworkPolicies: 'Disabled'
        }
      }
    ]
  }
}

var appSubnetId = resourceId('Microsoft.Network/virtualNetworks/subnets', names.vnet, names.appSubnet)
var privateEndpointSubnetId = resourceId('Microsoft.Network/virtualNetworks/subnets', names.vnet, names.privateEndpointSubnet)

// Blob (host storage, deployment package), queue (durable work) and table (state) each need their own endpoint and zone.
resource blobDnsZone 'Microsoft.Network/privateDnsZones@2020-06-01' = if (privateNetworking) {
  name: privateDnsZoneNames.blob
  location: 'global'
  tags: tags
}

resource blobDnsZoneLink 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2020-06-01' = if (privateNetworking) {
  parent: blobDnsZone
  name: names.vnet
  location: 'global'
  tags: tags
  properties: {
    registrationEnabled: false
    virtualNetwork: {
      id: vnet.id
    }
  }
}

resource blobPrivateEndpoint 'Microsoft.Network/privateEndpoints@2024-05-01' = if (privateNetworking) {
  name: 'pe-${appName}-blob'
  location: location
  tags: tags
  properties: {
    subnet: {
      id: privateEndpointSubnetId
    }
    privateLinkServiceConnections: [
      {
        name: 'blob'
        properties: {
          privateLinkServiceId: storage.id
          groupIds: [
            'blob'
          ]
        }
      }
    ]
  }
  dependsOn: [
    vnet
  ]
}

resource blobDnsZoneGroup 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups@2024-05-01' = if (privateNetworking) {
  parent: blobPrivateEndpoint
  name: 'default'
  properties: {
    privateDnsZoneConfigs: [
      {
        name: 'blob'
        properties: {
          privateDnsZoneId: blobDnsZone.id
        }
      }
    ]
  }
}

resource queueDnsZone 'Microsoft.Network/privateDnsZones@2020-06-01' = if (privateNetworking) {
  name: privateDnsZoneNames.queue
  location: 'global'
  tags: tags
}

resource queueDnsZoneLink 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2020-06-01' = if (privateNetworking) {
  parent: queueDnsZone
  name: names.vnet
  location: 'global'
  tags: tags
  properties: {
    registrationEnabled: false
    virtualNetwork: {
      id: vnet.id
    }
  }
}

resource queuePrivateEndpoint 'Microsoft.Network/privateEndpoints@2024-05-01' = if (privateNetworking) {
  name: 'pe-${appName}-queue'
  location: location
  tags: tags
  properties: {
    subnet: {
      id: privateEndpointSubnetId
    }
    privateLinkServiceConnections: [
      {
        name: 'queue'
        properties: {
          privateLinkServiceId: storage.id
          groupIds: [
            'queue'
          ]
        }
      }
    ]
  }
  dependsOn: [
    vnet
  ]
}

resource queueDnsZoneGroup 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups@2024-05-01' = if (privateNetworking) {
  parent: queuePrivateEndpoint
  name: 'default'
  properties: {
    privateDnsZoneConfigs: [
      {
        name: 'queue'
        properties: {
          privateDnsZoneId: queueDnsZone.id
        }
      }
    ]
  }
}

resource tableDnsZone 'Microsoft.Network/privateDnsZones@2020-06-01' = if (privateNetworking) {
  name: privateDnsZoneNames.table
  location: 'global'
  tags: tags
}

resource tableDnsZoneLink 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2020-06-01' = if (privateNetworking) {
  parent: tableDnsZone
  name: names.vnet
  location: 'global'
  tags: tags
  properties: {
    registrationEnabled: false
    virtualNetwork: {
      id: vnet.id
    }
  }
}

resource tablePrivateEndpoint 'Microsoft.Network/privateEndpoints@2024-05-01' = if (privateNetworking) {
  name: 'pe-${appName}-table'
  location: location
  tags: tags
  properties: {
    subnet: {
      id: privateEndpointSubnetId
    }
    privateLinkServiceConnections: [
      {
        name: 'table'
        properties: {
          privateLinkServiceId: storage.id
          groupIds: [
            'table'
          ]
        }
      }
    ]
  }
  dependsOn: [
    vnet
  ]
}

resource tableDnsZoneGroup 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups@2024-05-01' = if (privateNetworking) {
  parent: tablePrivateEndpoint
  name: 'default'
  properties: {
    privateDnsZoneConfigs: [
      {
        name: 'table'
        properties: {
          privateDnsZoneId: tableDnsZone.id
        }
      }
    ]
  }
}

resource vaultDnsZone 'Microsoft.Network/privateDnsZones@2020-06-01' = if (privateNetworking) {
  name: privateDnsZoneNames.vault
  location: 'global'
  tags: tags
}

resource vaultDnsZoneLink 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2020-06-01' = if (privateNetworking) {
  parent: vaultDnsZone
  name: names.vnet
  location: 'global'
  tags: tags
  properties: {
    registrationEnabled: false
    virtualNetwork: {
      id: vnet.id
    }
  }
}

resource vaultPrivateEndpoint 'Microsoft.Network/privateEndpoints@2024-05-01' = if (privateNetworking) {
  name: 'pe-${appName}-vault'
  location: location
  tags: tags
  properties: {
    subnet: {
      id: privateEndpointSubnetId
    }
    privateLinkServiceConnections: [
      {
        name: 'vault'
        properties: {
          privateLinkServiceId: keyVault.id
          groupIds: [
            'vault'
          ]
        }
      }
    ]
  }
  dependsOn: [
    vnet
  ]
}

resource vaultDnsZoneGroup 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups@2024-05-01' = if (privateNetworking) {
  parent: vaultPrivateEndpoint
  name: 'default'
  properties: {
    privateDnsZoneConfigs: [
      {
        name: 'vault'
        properties: {
          privateDnsZoneId: vaultDnsZone.id
        }
      }
    ]
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Role assignments: exactly these five, all to the user-assigned identity
// ---------------------------------------------------------------------------------------------------------------

resource kvSecretsUserAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(keyVault.id, uami.id, roleIds.keyVaultSecretsUser)
  scope: keyVault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.keyVaultSecretsUser)
    principalId: uami.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource blobDataOwnerAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, uami.id, roleIds.storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.storageBlobDataOwner)
    principalId: uami.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource tableDataContributorAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, uami.id, roleIds.storageTableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.storageTableDataContributor)
    principalId: uami.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Durable work: the handler enqueues and a queue trigger (identity-based AzureWebJobsStorage connection) reads,
// deletes and moves poison messages, which needs Storage Queue Data Contributor on the account.
resource queueDataContributorAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, uami.id, roleIds.storageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.storageQueueDataContributor)
    principalId: uami.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource metricsPublisherAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, uami.id, roleIds.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.monitoringMetricsPublisher)
    principalId: uami.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// ---------------------------------------------------------------------------------------------------------------
// App settings. Four groups joined with concat: a direction's group is left out when it is not deployed, and
// KEY_VAULT_URI only comes with directKeyVaultReads.
// ---------------------------------------------------------------------------------------------------------------

// Host storage, identity, telemetry, the Halo API, state and general behaviour: needed whatever the direction.
var commonSettings = [
  {
    name: 'AzureWebJobsStorage__credential'
    value: 'managedidentity'
  }
  {
    name: 'AzureWebJobsStorage__clientId'
    value: uami.properties.clientId
  }
  {
    name: 'AzureWebJobsStorage__blobServiceUri'
    value: storage.properties.primaryEndpoints.blob
  }
  {
    name: 'AzureWebJobsStorage__queueServiceUri'
    value: storage.properties.primaryEndpoints.queue
  }
  {
    name: 'AzureWebJobsStorage__tableServiceUri'
    value: storage.properties.primaryEndpoints.table
  }
  {
    name: 'StateStorage__tableServiceUri'
    value: storage.properties.primaryEndpoints.table
  }
  {
    name: 'StateStorage__credential'
    value: 'managedidentity'
  }
  {
    name: 'StateStorage__clientId'
    value: uami.properties.clientId
  }
  {
    name: 'STATE_TABLE_NAME'
    value: stateTableName
  }
  {
    name: 'AZURE_CLIENT_ID'
    value: uami.properties.clientId
  }
  {
    name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
    value: appInsights.properties.ConnectionString
  }
  {
    name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
    value: 'ClientId=${uami.properties.clientId};Authorization=AAD'
  }
  {
    name: 'HALO_AUTH_URL'
    value: haloAuthUrl
  }
  {
    name: 'HALO_API_BASE_URL'
    value: haloApiBaseUrl
  }
  {
    name: 'HALO_CLIENT_ID'
    value: haloClientId
  }
  {
    name: 'HALO_CLIENT_SECRET'
    value: '@Microsoft.KeyVault(VaultName=${keyVault.name};SecretName=${secretNames.haloClient})'
  }
  {
    name: 'HALO_CLIENT_SECRET_NAME'
    value: secretNames.haloClient
  }
  {
    name: 'HALO_TENANT'
    value: haloTenant
  }
  {
    name: 'HALO_SCOPE'
    value: haloScope
  }
  {
    name: 'HALO_RATE_LIMIT'
    value: string(haloRateLimit)
  }
  {
    name: 'HALO_RATE_WINDOW_SECONDS'
    value: string(haloRateWindowSeconds)
  }
  {
    name: 'HALO_EXTERNAL_REF_FIELD'
    value: haloExternalRefField
  }
  {
    name: 'HALO_EXTERNAL_REF_FIELD_ID'
    value: haloExternalRefFieldId
  }
  {
    name: 'KEY_VAULT_REFRESH_SECONDS'
    value: string(keyVaultRefreshSeconds)
  }
  {
    name: 'SECRET_ROTATION_GRACE_SECONDS'
    value: string(secretRotationGraceSeconds)
  }
  {
    name: 'LOG_LEVEL'
    value: logLevel
  }
  {
    name: 'UPSTREAM_TIMEOUT_SECONDS'
    value: string(upstreamTimeoutSeconds)
  }
  {
    name: 'CLAIM_TTL_SECONDS'
    value: string(claimTtlSeconds)
  }
  {
    name: 'INLINE_BUDGET_SECONDS'
    value: string(inlineBudgetSeconds)
  }
  // The host resolves reconcile/function.json's `%RECONCILE_SCHEDULE%` whatever directions are deployed.
  {
    name: 'RECONCILE_SCHEDULE'
    value: reconcileSchedule
  }
  // The status page (/api/status, both directions): its key, and the Halo address its ticket links go to.
  {
    name: 'STATUS_PAGE_KEY'
    value: '@Microsoft.KeyVault(VaultName=${keyVault.name};SecretName=${secretNames.statusPage})'
  }
  {
    name: 'STATUS_PAGE_KEY_NAME'
    value: secretNames.statusPage
  }
  {
    name: 'HALO_WEB_URL'
    value: haloWebUrl
  }
  {
    name: 'RUN_RETENTION_DAYS'
    value: string(runRetentionDays)
  }
]

// ContraForce -> Halo (/api/cf-webhook).
var cfWebhookSettings = [
  {
    name: 'CF_WEBHOOK_SECRET'
    value: '@Microsoft.KeyVault(VaultName=${keyVault.name};SecretName=${secretNames.cfWebhook})'
  }
  {
    name: 'CF_WEBHOOK_SECRET_NAME'
    value: secretNames.cfWebhook
  }
  {
    name: 'CF_MAX_SKEW_SECONDS'
    value: string(cfMaxSkewSeconds)
  }
  {
    name: 'CF_PROCESS_TEST_EVENTS'
    value: cfProcessTestEvents ? 'true' : 'false'
  }
  {
    name: 'HALO_DEFAULT_TICKETTYPE_ID'
    value: haloDefaultTicketTypeId
  }
  {
    name: 'HALO_DEFAULT_CLIENT_ID'
    value: haloDefaultClientId
  }
  {
    name: 'HALO_CLIENT_MAP'
    value: haloClientMap
  }
  {
    name: 'HALO_CLIENT_MATCH_BY_NAME'
    value: haloClientMatchByName ? 'true' : 'false'
  }
  {
    name: 'HALO_CLIENT_NAME_CACHE_SECONDS'
    value: string(haloClientNameCacheSeconds)
  }
  {
    name: 'CF_WORKSPACE_MAP'
    value: cfWorkspaceMap
  }
  {
    name: 'HALO_PRIORITY_MAP'
    value: haloPriorityMap
  }
  {
    name: 'HALO_PRIVATE_NOTE_OUTCOME'
    value: haloPrivateNoteOutcome
  }
]

// Halo -> ContraForce (/api/halo-webhook).
var haloWebhookSettings = [
  {
    name: 'HALO_WEBHOOK_SECRET'
    value: '@Microsoft.KeyVault(VaultName=${keyVault.name};SecretName=${secretNames.haloWebhook})'
  }
  {
    name: 'HALO_WEBHOOK_SECRET_NAME'
    value: secretNames.haloWebhook
  }
  {
    name: 'CF_SERVICE_ACCOUNT_CLIENT_SECRET'
    value: '@Microsoft.KeyVault(VaultName=${keyVault.name};SecretName=${secretNames.cfServiceAccountClient})'
  }
  {
    name: 'CF_SERVICE_ACCOUNT_CLIENT_SECRET_NAME'
    value: secretNames.cfServiceAccountClient
  }
  {
    name: 'CF_API_BASE_URL'
    value: cfApiBaseUrl
  }
  {
    name: 'CF_SERVICE_ACCOUNT_CLIENT_ID'
    value: cfServiceAccountClientId
  }
  {
    name: 'CF_WORKSPACE_ID'
    value: cfWorkspaceId
  }
  {
    name: 'HALO_CLOSED_STATUS_ID'
    value: haloClosedStatusId
  }
  {
    name: 'HALO_INTEGRATION_AGENT_ID'
    value: haloIntegrationAgentId
  }
  {
    name: 'HALO_INTEGRATION_APPLICATION'
    value: haloIntegrationApplication
  }
  {
    name: 'CF_CLOSE_CLASSIFICATION'
    value: cfCloseClassification
  }
  {
    name: 'CF_CLOSE_CLASSIFICATION_REASON'
    value: cfCloseClassificationReason
  }
  {
    name: 'HALO_CLOSE_DECISION_MAP'
    value: haloCloseDecisionMap
  }
  {
    name: 'HALO_CLASSIFICATION_FIELD_ID'
    value: haloClassificationFieldId
  }
  {
    name: 'RECONCILE_HALO_CALLS'
    value: string(reconcileHaloCalls)
  }
  {
    name: 'RECONCILE_REQUEUE_AFTER_SECONDS'
    value: string(reconcileRequeueAfterSeconds)
  }
]

// Direct Key Vault reads (the handler re-reads its secrets itself; the references above stay as the fallback).
var directKeyVaultSettings = [
  {
    name: 'KEY_VAULT_URI'
    value: keyVault.properties.vaultUri
  }
]

var appSettings = concat(commonSettings, cfWebhookEnabled ? cfWebhookSettings : [], haloWebhookEnabled ? haloWebhookSettings : [], directKeyVaultReads ? directKeyVaultSettings : [])

// ---------------------------------------------------------------------------------------------------------------
// Flex Consumption plan and the function app
// ---------------------------------------------------------------------------------------------------------------

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: names.plan
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

// Inbound allow-list: ContraForce's and Halo's egress addresses, when given. Both webhook functions live on this one
// site, so both lists apply to both routes. The deployment (SCM) endpoint keeps its own, unrestricted list: it accepts
// Microsoft Entra tokens only (basic publishing credentials are off below).
var contraForceAllowRules = [for i in range(0, length(contraForceEgressAddresses)): {
  name: 'contraforce-${i}'
  ipAddress: contraForceEgressAddresses[i]
  action: 'Allow'
  priority: 100 + i
}]
var haloAllowRules = [for i in range(0, length(haloEgressAddresses)): {
  name: 'halo-${i}'
  ipAddress: haloEgressAddresses[i]
  action: 'Allow'
  priority: 200 + i
}]
var allowListRules = concat(contraForceAllowRules, haloAllowRules)
var inboundRestricted = !empty(allowListRules)

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: appName
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${uami.id}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    keyVaultReferenceIdentity: uami.id
    // private: outbound traffic (storage, Key Vault references and reads, Halo, ContraForce) leaves through the
    // delegated subnet; Flex routes all of it there without vnetRouteAllEnabled.
    virtualNetworkSubnetId: privateNetworking ? appSubnetId : null
    // The webhooks must stay reachable from ContraForce and Halo: inbound is limited by the allow-list, the function
    // keys and the webhook signatures instead.
    publicNetworkAccess: 'Enabled'
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: uami.id
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'custom'
        version: '1.0'
      }
    }
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      ipSecurityRestrictions: allowListRules
      ipSecurityRestrictionsDefaultAction: inboundRestricted ? 'Deny' : 'Allow'
      scmIpSecurityRestrictionsUseMain: false
      appSettings: appSettings
    }
  }
  dependsOn: [
    // The identity can read the vault, the storage and publish telemetry before the first start.
    kvSecretsUserAssignment
    blobDataOwnerAssignment
    tableDataContributorAssignment
    queueDataContributorAssignment
    metricsPublisherAssignment
    // Created in this deployment when given, so the first start resolves them.
    deploymentContainer
    stateTable
    workQueue
    poisonQueue
    cfWebhookSecretResource
    haloClientSecretResource
    haloWebhookSecretResource
    cfServiceAccountClientSecretResource
    statusPageKeySecretResource
    // private: the endpoints and their DNS records exist before the first start reaches storage and the vault.
    blobDnsZoneGroup
    queueDnsZoneGroup
    tableDnsZoneGroup
    vaultDnsZoneGroup
    blobDnsZoneLink
    queueDnsZoneLink
    tableDnsZoneLink
    vaultDnsZoneLink
  ]
}

// Basic (user name and password) publishing credentials off for both the SCM (Kudu, zip deploy) and FTP endpoints:
// `az functionapp deployment source config-zip` (Azure CLI 2.48.1+) then deploys with the signed-in Microsoft Entra
// identity instead (https://learn.microsoft.com/azure/app-service/configure-basic-auth-disable).
resource scmBasicPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

resource ftpBasicPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Alerts (docs/operations.md says what each means and what to do). Without alertEmail they still fire, in Azure Monitor.
// ---------------------------------------------------------------------------------------------------------------

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (!empty(alertEmail)) {
  name: names.actionGroup
  location: 'Global'
  tags: tags
  properties: {
    groupShortName: 'cf-halo'
    enabled: true
    emailReceivers: [
      {
        name: 'operator'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

var alertActions = {
  actionGroups: empty(alertEmail) ? [] : [
    actionGroup.id
  ]
}

// The handler's own start line (src/startup.rs) and its failed-start line (src/main.rs); the host restarts a handler
// that exits, so several of them from one instance within the window mean it keeps crashing or failing to start.
var handlerStartedMessage = 'listening addr='
var handlerStartFailedMessage = 'start failed'

resource handler5xxAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: names.alert5xx
  location: location
  tags: tags
  properties: {
    displayName: 'Bridge handler answers 5xx'
    description: 'More than ${http5xxPercentThreshold}% of the requests to cf-webhook and halo-webhook were answered 5xx in 15 minutes (at least ${http5xxMinimumRequests} requests). See docs/operations.md.'
    severity: 2
    enabled: true
    scopes: [
      appInsights.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: 'requests | summarize total = count(), failed = countif(toint(resultCode) >= 500) | where total >= ${http5xxMinimumRequests} | extend failedPercent = 100.0 * failed / total'
          timeAggregation: 'Maximum'
          metricMeasureColumn: 'failedPercent'
          operator: 'GreaterThan'
          threshold: http5xxPercentThreshold
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    skipQueryValidation: true
    actions: alertActions
  }
}

// Waits on durable work: nothing is ever put on the poison queue, and no request is ever logged dead-lettered, until
// the queue trigger of the durable-work step exists. Two signals, so it works however that step dead-letters: the host
// moving a message to the poison queue (queue write logs above), or a handler log line whose outcome is dead-lettered.
resource deadLetterAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: names.alertDeadLetters
  location: location
  tags: tags
  properties: {
    displayName: 'Bridge work dead-lettered'
    description: 'A work item reached the poison queue ${poisonQueueName} or was logged with outcome dead-lettered: it will not be retried by itself. See docs/operations.md.'
    severity: 1
    enabled: true
    scopes: [
      logAnalytics.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT5M'
    criteria: {
      allOf: [
        {
          query: 'union isfuzzy=true (StorageQueueLogs | where OperationName == "PutMessage" and ObjectKey contains "/${poisonQueueName}"), (AppTraces | where Message contains "outcome=\\"dead-lettered\\"" or Message contains "\\"outcome\\":\\"dead-lettered\\"")'
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: false
    skipQueryValidation: true
    actions: alertActions
  }
}

resource handlerRestartAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: names.alertRestarts
  location: location
  tags: tags
  properties: {
    displayName: 'Bridge handler restarting repeatedly'
    description: 'One instance started the handler (or failed to) 3 or more times in 30 minutes. See docs/operations.md.'
    severity: 2
    enabled: true
    scopes: [
      appInsights.id
    ]
    evaluationFrequency: 'PT10M'
    windowSize: 'PT30M'
    criteria: {
      allOf: [
        {
          query: 'traces | where message contains "${handlerStartedMessage}" or message contains "${handlerStartFailedMessage}" | summarize starts = count() by cloud_RoleInstance | where starts >= 3'
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    skipQueryValidation: true
    actions: alertActions
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Workbook: the run history from the handler's log lines (docs/operations.md, "Run history, the status page and KQL")
// ---------------------------------------------------------------------------------------------------------------

// A shared workbook of the Application Insights resource (Application Insights -> Workbooks): deliveries per outcome,
// the deliveries with filters, what is stuck and the dead letters, from the one line the handler logs per delivery
// (`request` / `invocation`, parsed with parse-kv). Its name must be a GUID; this one stays the same on every
// redeployment, which puts infra/workbook.json back (an edited copy saved under another name is kept).
// Schema: Microsoft.Insights/workbooks@2023-06-01 (kind 'shared'; displayName, category and serializedData required).
resource deliveriesWorkbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(resourceGroup().id, appName, 'bridge-deliveries-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: 'Bridge deliveries (${appName})'
    category: 'workbook'
    sourceId: appInsights.id
    version: 'Notebook/1.0'
    serializedData: loadTextContent('workbook.json')
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Outputs
// ---------------------------------------------------------------------------------------------------------------

output functionAppName string = site.name
output cfWebhookUrl string = 'https://${site.properties.defaultHostName}/api/cf-webhook'
output haloWebhookUrl string = 'https://${site.properties.defaultHostName}/api/halo-webhook'
// The status page: anonymous at the host (a key in the URL would stay in browser history); the page asks for
// STATUS_PAGE_KEY itself.
output statusPageUrl string = 'https://${site.properties.defaultHostName}/api/status'
output cfWebhookKeyCommand string = 'az functionapp function keys list -g ${resourceGroup().name} -n ${site.name} --function-name cf-webhook --query default -o tsv'
output haloWebhookKeyCommand string = 'az functionapp function keys list -g ${resourceGroup().name} -n ${site.name} --function-name halo-webhook --query default -o tsv'
output keyVaultName string = keyVault.name
output storageAccountName string = storage.name
output identityClientId string = uami.properties.clientId
output deployedDirections string = directions
output deployedNetworkMode string = networkMode
// private: the one address the bridge calls Halo and ContraForce from (for their allow-lists); public: empty (Flex
// Consumption has no fixed outbound address).
output outboundIpAddress string = privateNetworking ? natPublicIp.properties.ipAddress : ''
output workQueueName string = workQueueName
output poisonQueueName string = poisonQueueName
