// ContraForce <-> HaloPSA bridge: one Azure Functions custom handler (`handler`) on a Flex Consumption plan.
//
// Deploy at resource-group scope:
//   az deployment group create -g <rg> -f infra/main.bicep -p infra/main.bicepparam
// then publish the package built by scripts/package (see docs/deploy.md).
//
// Plain resources only (no registry modules), so `bicep build` needs nothing but this file.
// The app settings set below are exactly the settings `handler --list-settings` names (minus the connection-string
// forms StateStorage and AzureWebJobsStorage, which are replaced by identity-based settings) plus the host's own
// AzureWebJobsStorage__blobServiceUri/__queueServiceUri and APPLICATIONINSIGHTS_* settings; tests/infra checks this.

targetScope = 'resourceGroup'

// ---------------------------------------------------------------------------------------------------------------
// Deployment shape
// ---------------------------------------------------------------------------------------------------------------

@description('Name of the function app (globally unique: it becomes <appName>.azurewebsites.net).')
@minLength(2)
@maxLength(60)
param appName string

@description('Azure region of every resource.')
param location string = resourceGroup().location

@description('Which direction(s) to deploy. The other direction\'s settings and secrets are left out; its route then answers 503 naming what is missing.')
@allowed([
  'both'
  'cf-to-halo'
  'halo-to-cf'
])
param directions string = 'both'

@description('Name of the Key Vault (3-24 characters). Change it when a soft-deleted vault of the default name still exists (purge protection keeps it for 90 days).')
@minLength(3)
@maxLength(24)
param keyVaultName string = 'kv-${uniqueString(resourceGroup().id, appName)}'

@description('Name of the storage account (3-24 lowercase letters and digits).')
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

// ---------------------------------------------------------------------------------------------------------------
// Secrets. Each Key Vault secret is created only when its value is given here; otherwise set it later with
// `az keyvault secret set` (a redeploy with an empty value leaves the secret alone).
// ---------------------------------------------------------------------------------------------------------------

@secure()
@description('ContraForce webhook signing secret (cf-to-halo). Empty: set Key Vault secret cf-webhook-secret yourself.')
param cfWebhookSecret string = ''

@secure()
@description('Halo API application client secret (both directions). Empty: set Key Vault secret halo-client-secret yourself.')
param haloClientSecret string = ''

@secure()
@description('Secret Halo sends in X-Halo-Secret or as the Basic auth password (halo-to-cf). Empty: set Key Vault secret halo-webhook-secret yourself.')
param haloWebhookSecret string = ''

@secure()
@description('ContraForce service account client secret (halo-to-cf). Empty: set Key Vault secret cf-service-account-client-secret yourself.')
param cfServiceAccountClientSecret string = ''

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

@description('HALO_EXTERNAL_REF_FIELD: ticket field that carries cf|source|incidentId. Use thirdpartynumber to continue tickets created by Logic App 01.')
@allowed([
  'supplier_reference'
  'thirdpartynumber'
])
param haloExternalRefField string = 'supplier_reference'

@description('HALO_EXTERNAL_REF_FIELD_ID: custom field id that carries the reference instead; empty for none.')
param haloExternalRefFieldId string = ''

// ---------------------------------------------------------------------------------------------------------------
// ContraForce -> Halo (cf-to-halo)
// ---------------------------------------------------------------------------------------------------------------

@description('HALO_DEFAULT_TICKETTYPE_ID: Halo ticket type id for new tickets (required for cf-to-halo).')
param haloDefaultTicketTypeId string = ''

@description('HALO_DEFAULT_CLIENT_ID: Halo client id for incidents whose CF account is not in HALO_CLIENT_MAP (required for cf-to-halo).')
param haloDefaultClientId string = ''

@description('HALO_CLIENT_MAP: <CF accountId>=<Halo client id>,...; empty for none.')
param haloClientMap string = ''

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
// Halo -> ContraForce (halo-to-cf)
// ---------------------------------------------------------------------------------------------------------------

@description('CF_API_BASE_URL: ContraForce API, e.g. https://prod.platform.contraforce.com/api/v2 (required for halo-to-cf).')
param cfApiBaseUrl string = ''

@description('CF_SERVICE_ACCOUNT_CLIENT_ID: client id of the ContraForce service account (required for halo-to-cf).')
param cfServiceAccountClientId string = ''

@description('CF_WORKSPACE_ID: ContraForce workspace id (required for halo-to-cf).')
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

// ---------------------------------------------------------------------------------------------------------------
// State, Key Vault reads, general
// ---------------------------------------------------------------------------------------------------------------

@description('STATE_TABLE_NAME: the Table Storage table holding the bridge state (created here).')
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

// ---------------------------------------------------------------------------------------------------------------
// Names and constants
// ---------------------------------------------------------------------------------------------------------------

var outboundEnabled = directions != 'halo-to-cf'
var inboundEnabled = directions != 'cf-to-halo'

// The defaults of the *_SECRET_NAME settings.
var secretNames = {
  cfWebhook: 'cf-webhook-secret'
  haloClient: 'halo-client-secret'
  haloWebhook: 'halo-webhook-secret'
  cfServiceAccountClient: 'cf-service-account-client-secret'
}

var deploymentContainerName = 'app-package'

// Built-in role definition ids.
var roleIds = {
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

// ---------------------------------------------------------------------------------------------------------------
// Identity (created first; every role below is granted to it before the app starts)
// ---------------------------------------------------------------------------------------------------------------

resource uami 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-${appName}'
  location: location
}

// ---------------------------------------------------------------------------------------------------------------
// Monitoring
// ---------------------------------------------------------------------------------------------------------------

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-${appName}'
  location: location
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: logRetentionInDays
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-${appName}'
  location: location
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
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    defaultToOAuthAuthentication: true
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

// ---------------------------------------------------------------------------------------------------------------
// Key Vault (RBAC, soft delete, purge protection) and its secrets
// ---------------------------------------------------------------------------------------------------------------

resource keyVault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: keyVaultName
  location: location
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
  }
}

resource cfWebhookSecretResource 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (outboundEnabled && !empty(cfWebhookSecret)) {
  parent: keyVault
  name: secretNames.cfWebhook
  properties: {
    value: cfWebhookSecret
  }
}

resource haloClientSecretResource 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(haloClientSecret)) {
  parent: keyVault
  name: secretNames.haloClient
  properties: {
    value: haloClientSecret
  }
}

resource haloWebhookSecretResource 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (inboundEnabled && !empty(haloWebhookSecret)) {
  parent: keyVault
  name: secretNames.haloWebhook
  properties: {
    value: haloWebhookSecret
  }
}

resource cfServiceAccountClientSecretResource 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (inboundEnabled && !empty(cfServiceAccountClientSecret)) {
  parent: keyVault
  name: secretNames.cfServiceAccountClient
  properties: {
    value: cfServiceAccountClientSecret
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Role assignments: exactly these four, all to the user-assigned identity
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
]

// ContraForce -> Halo (/api/cf-webhook).
var outboundSettings = [
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
    name: 'HALO_PRIORITY_MAP'
    value: haloPriorityMap
  }
  {
    name: 'HALO_PRIVATE_NOTE_OUTCOME'
    value: haloPrivateNoteOutcome
  }
]

// Halo -> ContraForce (/api/halo-webhook).
var inboundSettings = [
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
]

// Direct Key Vault reads (the handler re-reads its secrets itself; the references above stay as the fallback).
var directKeyVaultSettings = [
  {
    name: 'KEY_VAULT_URI'
    value: keyVault.properties.vaultUri
  }
]

var appSettings = concat(commonSettings, outboundEnabled ? outboundSettings : [], inboundEnabled ? inboundSettings : [], directKeyVaultReads ? directKeyVaultSettings : [])

// ---------------------------------------------------------------------------------------------------------------
// Flex Consumption plan and the function app
// ---------------------------------------------------------------------------------------------------------------

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: 'plan-${appName}'
  location: location
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: appName
  location: location
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
      appSettings: appSettings
    }
  }
  dependsOn: [
    // The identity can read the vault, the storage and publish telemetry before the first start.
    kvSecretsUserAssignment
    blobDataOwnerAssignment
    tableDataContributorAssignment
    metricsPublisherAssignment
    // Created in this deployment when given, so the first start resolves them.
    deploymentContainer
    stateTable
    cfWebhookSecretResource
    haloClientSecretResource
    haloWebhookSecretResource
    cfServiceAccountClientSecretResource
  ]
}

// ---------------------------------------------------------------------------------------------------------------
// Outputs
// ---------------------------------------------------------------------------------------------------------------

output functionAppName string = site.name
output cfWebhookUrl string = 'https://${site.properties.defaultHostName}/api/cf-webhook'
output haloWebhookUrl string = 'https://${site.properties.defaultHostName}/api/halo-webhook'
output cfWebhookKeyCommand string = 'az functionapp function keys list -g ${resourceGroup().name} -n ${site.name} --function-name cf-webhook --query default -o tsv'
output haloWebhookKeyCommand string = 'az functionapp function keys list -g ${resourceGroup().name} -n ${site.name} --function-name halo-webhook --query default -o tsv'
output keyVaultName string = keyVault.name
output storageAccountName string = storage.name
output identityClientId string = uami.properties.clientId
output deployedDirections string = directions
