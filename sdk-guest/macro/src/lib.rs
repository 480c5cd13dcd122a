//! The `#[exporter]` attribute: one function becomes a stateless wasmtel exporter.

use proc_macro::TokenStream;
use quote::quote;
use syn::{ItemFn, parse_macro_input};

/// Turns `fn(&MetricBatch, &Config) -> Result<Vec<Outbound>, String>` into a metrics exporter component.
///
/// The function is called for every metric batch with the plugin's
/// configuration; the exporter asks for cumulative metrics and treats 2xx as
/// success, 429 and 5xx as retryable and other statuses as rejections.
#[proc_macro_attribute]
pub fn exporter(_attr: TokenStream, item: TokenStream) -> TokenStream {
    let function = parse_macro_input!(item as ItemFn);
    let name = &function.sig.ident;
    quote! {
        #function

        const _: () = {
            /// The exporter generated around the function.
            struct StatelessExporter(::wasmtel_guest::Config);

            impl ::wasmtel_guest::Exporter for StatelessExporter {
                fn init(config: ::wasmtel_guest::Config) -> ::std::result::Result<(Self, ::wasmtel_guest::ExporterInfo), ::std::string::String> {
                    ::std::result::Result::Ok((Self(config), ::wasmtel_guest::ExporterInfo::metrics(::wasmtel_guest::Temporality::Cumulative)))
                }

                fn encode_metrics(&mut self, batch: &::wasmtel_guest::MetricBatch) -> ::std::result::Result<::std::vec::Vec<::wasmtel_guest::Outbound>, ::std::string::String> {
                    #name(batch, &self.0)
                }
            }

            ::wasmtel_guest::export_exporter!(StatelessExporter);
        };
    }
    .into()
}
