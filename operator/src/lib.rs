//! The DBHub operator: CRD types for `dbhub.tas.io/v1alpha1` and (as they land) the
//! reconcilers that check Databases and deploy DBHub. The service embeds it; it depends on
//! nothing in the service.

pub mod crd;
